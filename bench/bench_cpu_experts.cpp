// hlwq_bench_cpu_experts: the CPU side of `--cpu-experts` (CpuExpertJobs, what the CUDA backend's host node runs)
// on a model's own experts: the time for J distinct experts of one token (J = 1, 2, 4, 8, 16) and the weight GB/s
// they read, beside this machine's read ceiling measured in the same run (a read-only sum over a buffer far larger
// than the last-level cache). A least-squares line through the J series splits it into a fixed part per call (the
// parallel region's start and its barriers) and a part per expert — what the `auto` cost model of src/moe/cpu_split.h
// charges. Every expert is run once before the timing (first reads of the mapped checkpoint fault its pages in); then
// each repetition takes experts the last ones did not, so the weights come from memory, not from the cache (the
// layer's experts are far larger than a last-level cache).
// --gap-us G sleeps G µs before every timed call, as the GPU's work between two MoE layers (~50 µs in decode) or two
// tokens (ms) separates the host nodes of a step: the team's threads then go idle between calls, as they do there.
// usage: hlwq_bench_cpu_experts MODEL [--layer L] [--repeats N] [-t THREADS] [--gap-us G]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "backend/cpu/expert_jobs.h"
#include "core/error.h"
#include "model/model.h"
#include "perf/cpu_ceilings.h"

using namespace hlwq;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU experts (the --cpu-experts host node) on a model's own experts, against the read ceiling"};
  std::string model;
  int layer = -1, repeats = 5, threads = omp_get_max_threads(), gap_us = 0;
  app.add_option("MODEL", model, "model directory (CT INT4, bf16 or HLWQ)")->required();
  app.add_option("--layer", layer, "MoE layer (default: the first)");
  app.add_option("--repeats", repeats, "timed calls per point (after one warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("-t,--threads", threads, "threads")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--gap-us", gap_us, "µs the calling thread sleeps before each timed call")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  CLI11_PARSE(app, argc, argv);
  try {
    omp_set_num_threads(threads);  // CpuExpertJobs takes the caller's thread count
    const Model m = Model::load(model);
    const ModelConfig& cfg = m.config();
    int L = layer;
    for (int l = 0; L < 0 && l < int(cfg.n_layers); ++l)
      if (!m.weights().layers[size_t(l)].moe.experts.empty()) L = l;
    HLWQ_CHECK(L >= 0 && L < int(cfg.n_layers) && !m.weights().layers[size_t(L)].moe.experts.empty(),
               "{}: layer {} has no routed experts", model, L);
    const MoeWeights& w = m.weights().layers[size_t(L)].moe;
    const int64_t H = cfg.hidden_size, I = cfg.moe_intermediate, E = int64_t(w.experts.size());
    const int64_t expert_b = expert_weight_bytes(w.experts[0]);
    const std::vector<int> Js = {1, 2, 4, 8, 16};
    const double ceil = measure_cpu_ceilings(uint64_t(1) << 30, repeats).read_gbs;  // the threads set above
    fmt::print("{} layer {}: {} experts of {:.3f} MB (H {}, I {}); {} threads; read ceiling {:.1f} GB/s (1 GiB, "
               "median of {}); {} µs idle before each call\n", model, L, E, double(expert_b) / 1e6, H, I, threads, ceil,
               repeats, gap_us);
    CpuExpertJobs jobs(H, I, 16);
    std::vector<float> xn(size_t(H), 0.01f), out(size_t(16 * H));
    // every expert once first: the checkpoint is mapped, and a page's first read is a page fault (≈ 2 ms an expert
    // here), which a serving process pays once per expert, not per step
    for (int64_t e = 0; e < E; ++e) {
      const CpuExpertJob one{0, 0, int32_t(e), 1.f};
      jobs.run(w, &one, 1, xn.data(), 1, out.data());
    }
    int64_t next = 0;  // experts are taken in turn, so no repetition rereads a recent one
    std::vector<double> xs, ys;
    fmt::print("| experts J | µs per call (median of {}) | µs per expert | weight GB/s | % of read ceiling |\n"
               "|---|---|---|---|---|\n", repeats);
    for (int J : Js) {
      std::vector<double> t;
      for (int r = 0; r <= repeats; ++r) {
        std::vector<CpuExpertJob> js;
        for (int j = 0; j < J; ++j) js.push_back({j, 0, int32_t(next++ % E), 1.f});
        if (gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
        const auto t0 = Clock::now();
        jobs.run(w, js.data(), J, xn.data(), 1, out.data());
        if (r > 0) t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      const double us = median(t), gbs = double(J * expert_b) / us / 1e3;
      xs.push_back(J), ys.push_back(us);
      fmt::print("| {} | {:.1f} | {:.1f} | {:.1f} | {:.0f} % |\n", J, us, us / J, gbs, 100 * gbs / ceil);
    }
    // t(J) = a + b·J, least squares
    const double n = double(xs.size()), sx = std::accumulate(xs.begin(), xs.end(), 0.0),
                 sy = std::accumulate(ys.begin(), ys.end(), 0.0);
    double sxx = 0, sxy = 0;
    for (size_t i = 0; i < xs.size(); ++i) sxx += xs[i] * xs[i], sxy += xs[i] * ys[i];
    const double b = (n * sxy - sx * sy) / (n * sxx - sx * sx), a = (sy - b * sx) / n;
    fmt::print("fit: {:.1f} µs per call + {:.1f} µs per expert ({:.1f} GB/s, {:.0f} % of the read ceiling)\n", a, b,
               double(expert_b) / b / 1e3, 100 * double(expert_b) / b / 1e3 / ceil);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cpu_experts: %s\n", e.what());
    return 1;
  }
  return 0;
}
