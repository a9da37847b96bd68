// hlwq_bench_gptq: the cost of calibrated quantization's parts at Qwen3.6-35B-A3B's expert shapes (hidden 2048,
// expert width 512), on this machine's threads: accumulating H += XᵀX per token, the factor of one input
// (gptq_factor, n = 2048 and 512), and GPTQ on one matrix (gate/up [512, 2048], down [2048, 512]) for INT4 and
// HLWQ-4, also with one round of scale re-fitting (--gptq-refit 1). It then projects the full model (40 layers × 256 experts; the attention/GDN and shared-expert linears,
// ~3% of the parameters, are left out of the projection and said so) for a given number of calibration tokens.
// Median of --repeats runs; synthetic correlated inputs (GPTQ's cost does not depend on the values).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <ctime>
#include <random>
#include <vector>

#include "quant/gptq.h"
#include "quant/lloyd_max.h"

namespace {

using hlwq::GptqFactor;
using hlwq::GptqOptions;

double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Median CPU seconds of f (all threads together): on a shared machine wall time measures the other users too,
// CPU time only this work; divide by the cores available for a wall-time estimate.
template <class F>
double median_s(int repeats, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = cpu_s();
    f();
    t.push_back(cpu_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// H = XᵀX + I for X [T, n] with 16 shared factors (positive definite, realistic conditioning).
std::vector<double> hessian(int64_t n, int64_t T) {
  std::mt19937 rng(1);
  std::normal_distribution<double> nd;
  std::vector<double> x(size_t(T * n)), H(size_t(n * n), 0.0);
  for (double& v : x) v = nd(rng);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < n; ++k) x[size_t(t * n + k)] += 3.0 * x[size_t(t * n + k % 16)];
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < n; ++j) H[size_t(i * n + j)] += x[size_t(t * n + i)] * x[size_t(t * n + j)];
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] += 1.0;
  return H;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("GPTQ cost at Qwen3.6-35B-A3B's expert shapes");
  int repeats = 3;
  int64_t tokens = 65536;
  app.add_option("--repeats", repeats)->capture_default_str();
  app.add_option("--calib-tokens", tokens, "calibration tokens of the projection")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  constexpr int64_t kH = 2048, kI = 512, kLayers = 40, kExperts = 256, kActive = 8;
  const int threads = omp_get_max_threads();
  std::mt19937 rng(2);
  std::normal_distribution<float> nf;
  std::vector<float> w(size_t(kH * kI));
  for (float& v : w) v = nf(rng) * 0.02f;
  const auto Hh = hessian(kH, 4096), Hi = hessian(kI, 4096);
  const hlwq::HlwqCodebook cb(hlwq::lloyd_max_table(4));
  GptqOptions o;
  GptqFactor fh, fi;
  const double t_fh = median_s(repeats, [&] { fh = hlwq::gptq_factor(Hh.data(), kH, o); });
  const double t_fi = median_s(repeats, [&] { fi = hlwq::gptq_factor(Hi.data(), kI, o); });
  const double t_gu = median_s(repeats, [&] { hlwq::gptq_int4(w.data(), kI, kH, fh, o); });
  const double t_dn = median_s(repeats, [&] { hlwq::gptq_int4(w.data(), kH, kI, fi, o); });
  const double t_gu4 = median_s(repeats, [&] { hlwq::gptq_hlwq(w.data(), kI, kH, fh, o, cb, 4, hlwq::HlwqScale::least_squares); });
  const double t_dn4 = median_s(repeats, [&] { hlwq::gptq_hlwq(w.data(), kH, kI, fi, o, cb, 4, hlwq::HlwqScale::least_squares); });
  GptqOptions orf = o;  // --gptq-refit 1: the factor keeps H; the re-fit is the extra work per matrix
  orf.refit = 1;
  const GptqFactor fhr = hlwq::gptq_factor(Hh.data(), kH, orf), fir = hlwq::gptq_factor(Hi.data(), kI, orf);
  const double t_gur = median_s(repeats, [&] { hlwq::gptq_int4(w.data(), kI, kH, fhr, orf); });
  const double t_dnr = median_s(repeats, [&] { hlwq::gptq_int4(w.data(), kH, kI, fir, orf); });
  // accumulation: one token's rows into an expert's two inputs (x [H] and its activation [I]), as the tap does
  const double acc_flops = 2.0 * double(kH * kH + kI * kI);
  fmt::print("hlwq_bench_gptq: {} threads, median of {}, CPU seconds (all threads together)\n", threads, repeats);
  fmt::print("gptq_factor n={}: {:.3f} s   n={}: {:.3f} s\n", kH, t_fh, kI, t_fi);
  fmt::print("gptq_int4 [{}, {}]: {:.3f} s   [{}, {}]: {:.3f} s\n", kI, kH, t_gu, kH, kI, t_dn);
  fmt::print("gptq_hlwq-4 [{}, {}]: {:.3f} s   [{}, {}]: {:.3f} s\n", kI, kH, t_gu4, kH, kI, t_dn4);
  fmt::print("with --gptq-refit 1: gptq_int4 [{}, {}]: {:.3f} s   [{}, {}]: {:.3f} s\n", kI, kH, t_gur, kH, kI, t_dnr);
  // Per expert: one factor per input (gate and up share theirs), GPTQ on three matrices, and an output-error check
  // about as costly as one GPTQ row pass (not timed separately: counted as one more matrix).
  const double per_expert = t_fh + t_fi + 3 * t_gu + 2 * t_dn;
  const double per_expert4 = t_fh + t_fi + 3 * t_gu4 + 2 * t_dn4;
  const double n_exp = double(kLayers * kExperts);
  const double params = n_exp * 3 * kH * kI;
  fmt::print("projection for Qwen3.6-35B-A3B's {} routed experts ({:.1f} B parameters), quantization only, CPU "
             "seconds: INT4 {:.0f}, HLWQ-4 {:.0f} ({:.0f} and {:.0f} per billion parameters; divide by the cores)\n",
             kLayers * kExperts, params / 1e9, per_expert * n_exp, per_expert4 * n_exp,
             per_expert * n_exp / (params / 1e9), per_expert4 * n_exp / (params / 1e9));
  fmt::print("statistics accumulation for {} tokens (k = {} experts per token, fp64 GEMM FLOPs): {:.1f} TFLOP\n",
             tokens, kActive, acc_flops * double(tokens * kActive * kLayers) / 1e12);
  return 0;
}
