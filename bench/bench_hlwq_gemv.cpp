// Decode-GEMV speed of native HLWQ codes against the engine's INT4 and bf16 kernels on the same matrix shape:
// y[t] = W x[t] for t < T tokens (T = 1 is one decode step), W [rows, cols] far larger than the last-level
// cache, so each call streams the weights from memory. Every figure is the fastest of repeated calls after a
// warm-up (on a shared machine the minimum is the least disturbed; the median is printed beside it), and with
// one thread also the median CPU time the calling thread got (CLOCK_THREAD_CPUTIME_ID), which time slices lost to
// other processes do not inflate; weight GB/s counts the bytes each format stores (codes + scales), G weight/s the matrix entries.
// HLWQ timings include rotating the activations (one 128-point FWHT per block and token).
// usage: hlwq_bench_hlwq_gemv [--rows N] [--cols N] [--tokens T] [--repeats N]
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/dtype.h"
#include "backend/cpu/kernels.h"
#include "quant/hlwq_linear.h"
#include "quant/lloyd_max.h"

using namespace hlwq;

namespace {

using Clock = std::chrono::steady_clock;

struct Timing {
  double min, median, cpu_median;  // seconds; cpu: the calling thread's CPU time
};

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <typename F>
Timing time_calls(int warmup, int repeats, F&& f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> s, cpu;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    f();
    cpu.push_back(thread_cpu_seconds() - c0);
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  std::sort(cpu.begin(), cpu.end());
  return {s.front(), s[s.size() / 2], cpu[cpu.size() / 2]};
}

struct Row {
  std::string format;
  double bytes;  // weight bytes read per call
  Timing t;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("HLWQ vs INT4 vs bf16 decode GEMV");
  int64_t rows = 16384, cols = 2048, T = 1;
  int repeats = 15;
  app.add_option("--rows", rows);
  app.add_option("--cols", cols);
  app.add_option("--tokens", T)->check(CLI::Range(1, 3));
  app.add_option("--repeats", repeats);
  CLI11_PARSE(app, argc, argv);
  const int64_t nb = (cols + 127) / 128, inp = nb * 128;
  std::mt19937 rng(1);
  std::vector<float> x(size_t(T * cols));
  for (float& v : x) v = std::normal_distribution<float>(0, 1)(rng);
  std::vector<float> y(size_t(T * rows));
  const CpuKernels& ck = cpu_kernels();

  // bf16 and INT4 operands (random bits: the kernels' speed does not depend on the values)
  std::vector<uint16_t> wb(size_t(rows * cols));
  for (auto& v : wb) v = f32_to_bf16(std::normal_distribution<float>(0, 0.02f)(rng));
  std::vector<uint8_t> packed(size_t(rows * cols / 2));
  for (auto& v : packed) v = uint8_t(rng());
  std::vector<float> scale(size_t(rows * cols / 128), 0.01f);

  auto panels = [&](auto&& body) {
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += kPanelRows) body(r0, std::min(kPanelRows, rows - r0));
  };
  std::vector<Row> out;
  for (int nth : {1, omp_get_num_procs()}) {
    omp_set_num_threads(nth);
    out.clear();
    out.push_back({"bf16", double(rows * cols * 2), time_calls(2, repeats, [&] {
                     panels([&](int64_t r0, int64_t nr) {
                       ck.gemv_bf16(wb.data() + r0 * cols, x.data(), cols, T, cols, y.data() + r0, rows, nr);
                     });
                   })});
    out.push_back({"ct-int4 (u4b8_g128)", double(rows * cols / 2 + rows * cols / 128 * 2),
                   time_calls(2, repeats, [&] {
                     panels([&](int64_t r0, int64_t nr) {
                       ck.gemv_u4b8(packed.data() + r0 * cols / 2, scale.data() + r0 * (cols / 128), x.data(), cols,
                                    T, cols, y.data() + r0, rows, nr);
                     });
                   })});
    for (const HlwqKernels* hk : {&hlwq_kernels(true), &hlwq_kernels_scalar()})
      for (int bits : {3, 4, 5}) {
        if (hk == &hlwq_kernels_scalar() && bits != 4) continue;
        HlwqMatrixView v;
        v.out = rows;
        v.in = cols;
        v.bits = bits;
        std::vector<uint8_t> codes(size_t(rows * v.row_bytes()));
        for (auto& c : codes) c = uint8_t(rng());
        std::vector<uint16_t> norms(size_t(rows * nb), f32_to_f16(0.5f));
        v.codes = codes.data();
        v.norms = norms.data();
        v.codebook = lloyd_max_table(bits).data();
        std::vector<float> xp(size_t(T * inp));
        const Timing s = time_calls(2, repeats, [&] {
          for (int64_t t = 0; t < T; ++t) hk->prepare(x.data() + t * cols, cols, bits, xp.data() + t * inp);
          panels([&](int64_t r0, int64_t nr) { hk->gemv(v, r0, nr, xp.data(), inp, T, y.data() + r0, rows); });
        });
        out.push_back({fmt::format("hlwq-{} ({})", bits, hk->isa), double(codes.size() + norms.size() * 2), s});
      }
    const double int4 = out[1].t.min;
    fmt::print("\n{} thread(s), W [{}, {}], {} token(s), {} isa\n", nth, rows, cols, T, ck.isa);
    const double int4_cpu = out[1].t.cpu_median;
    fmt::print("| format | bits/weight | µs/call min (median) | weight GB/s | G weight/s | time vs ct-int4 |{}\n"
               "|---|---|---|---|---|---|{}\n",
               nth == 1 ? " CPU µs/call | CPU time vs ct-int4 |" : "", nth == 1 ? "---|---|" : "");
    for (const Row& r : out) {
      fmt::print("| {} | {:.3f} | {:.0f} ({:.0f}) | {:.2f} | {:.2f} | {:.2f}x |", r.format,
                 8 * r.bytes / double(rows * cols), r.t.min * 1e6, r.t.median * 1e6, r.bytes / r.t.min / 1e9,
                 double(rows * cols) / r.t.min / 1e9, r.t.min / int4);
      if (nth == 1) fmt::print(" {:.0f} | {:.2f}x |", r.t.cpu_median * 1e6, r.t.cpu_median / int4_cpu);
      fmt::print("\n");
    }
  }
  return 0;
}
