// INT4 group quantizers. round_half_even uses the 1.5·2^23 trick (exact for |x| < 2^22 under the default
// rounding mode) on a value first clamped to ±9, so every group loop is branch-free and vectorizes; clamping to
// ±9 before rounding then to [−8, 7] after equals torch.round(x).clamp(−8, 7) for every finite x.
#include "quant/int4_quant.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/hlwq_codec.h"
#include "quant/int4_pack.h"
#include "quant/lloyd_max.h"

namespace hlwq {
namespace {

constexpr int kG = kInt4Group;
constexpr float kMinAmax = 1e-10f;
constexpr int kMseGridPoints = 49;                        // quality_ref.py's grid
constexpr float kMseAlphaLo = 0.55f, kMseAlphaHi = 1.15f;
constexpr int kMseRefineUlps = 4;                         // bf16 neighbours tried on each side of the grid optimum

struct MethodName {
  Int4Method m;
  std::string_view name;
};
constexpr std::array<MethodName, 5> kMethodNames = {{{Int4Method::rtn, "rtn"},
                                                     {Int4Method::rtn_ct, "rtn-ct"},
                                                     {Int4Method::mse, "mse"},
                                                     {Int4Method::hlwq_cascade, "hlwq-cascade"},
                                                     {Int4Method::hlwq_cascade_lm5, "hlwq-cascade-lm5"}}};

inline float round_half_even_small(float x) {  // |x| < 2^22
  constexpr float kMagic = 12582912.0f;          // 1.5·2^23: the sum's ulp is 1, and kMagic is even
  return (x + kMagic) - kMagic;
}

inline float clampf(float x, float lo, float hi) { return std::min(std::max(x, lo), hi); }

// Inputs are finite (quantize_int4 checks), so the max reduction needs no NaN care.
inline float group_amax(const float* __restrict g) {
  float m = 0;
#pragma omp simd reduction(max : m)
  for (int j = 0; j < kG; ++j) m = std::max(m, std::fabs(g[j]));
  return std::max(m, kMinAmax);
}

// q = clamp(round(g/s), −8, 7) with the fp32 s.
inline void quantize_with(const float* __restrict g, float s, int8_t* __restrict q) {
#pragma omp simd
  for (int j = 0; j < kG; ++j) q[j] = int8_t(clampf(round_half_even_small(clampf(g[j] / s, -9.0f, 9.0f)), -8.0f, 7.0f));
}

// ≈ Σ(clamp(round(g/s))·s − g)², only used to rank candidate scales: g·(1/s) instead of g/s (2× faster; the two
// differ only where g/s sits on a rounding tie within an ulp). The simd reduction order is fixed at compile time,
// so the value does not depend on the thread count.
inline float group_sq_err(const float* __restrict g, float s) {
  const float inv_s = 1.0f / s;
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int j = 0; j < kG; ++j) {
    const float d = clampf(round_half_even_small(clampf(g[j] * inv_s, -9.0f, 9.0f)), -8.0f, 7.0f) * s - g[j];
    acc += d * d;
  }
  return acc;
}

// The same, each element's squared error weighted by imp[j].
inline float group_weighted_sq_err(const float* __restrict g, const float* __restrict imp, float s) {
  const float inv_s = 1.0f / s;
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int j = 0; j < kG; ++j) {
    const float d = clampf(round_half_even_small(clampf(g[j] * inv_s, -9.0f, 9.0f)), -8.0f, 7.0f) * s - g[j];
    acc += imp[j] * d * d;
  }
  return acc;
}

const std::vector<float>& cascade_table(Int4Method m) {
  return m == Int4Method::hlwq_cascade ? seed_q5_table() : lloyd_max_table(5);
}

// One row: w [in] → packed [in/8], scale [in/128]; returns the error sums. scratch [in] (cascade only).
WeightError quantize_row(Int4Method m, const float* w, int64_t in, const HlwqCodebook* cb, float* scratch,
                         int32_t* packed, uint16_t* scale) {
  const float* src = w;
  if (cb) {  // cascade: HLWQ-Q5 round trip, then the bf16 the seed writes before its RTN pass
    hlwq_roundtrip_row(w, in, *cb, HlwqScale::l2_norm, scratch);
    for (int64_t k = 0; k < in; ++k) scratch[k] = bf16_to_f32(f32_to_bf16(scratch[k]));
    src = scratch;
  }
  WeightError err;
  alignas(64) int8_t q[kG];
  alignas(64) float deq[kG];
  for (int64_t g = 0; g < in / kG; ++g) {
    const float* grp = src + g * kG;
    uint16_t s;
    switch (m) {
      case Int4Method::rtn_ct: s = int4_rtn_ct_group(grp, q); break;
      case Int4Method::mse: s = int4_mse_group(grp, q); break;
      default: s = int4_rtn_group(grp, q); break;  // rtn and both cascades
    }
    scale[g] = s;
    const float sf = bf16_to_f32(s);
    for (int j = 0; j < kG; ++j) deq[j] = float(q[j]) * sf;
    for (int j = 0; j < kG / kInt4PerWord; ++j)
      packed[g * (kG / kInt4PerWord) + j] = int32_t(int4_pack_word(q + j * kInt4PerWord));
    err += weight_error(w + g * kG, deq, kG);
  }
  return err;
}

}  // namespace

Int4Method parse_int4_method(std::string_view name) {
  for (const auto& e : kMethodNames)
    if (e.name == name) return e.m;
  fail("unknown INT4 method '{}' (valid: rtn, rtn-ct, mse, hlwq-cascade, hlwq-cascade-lm5)", name);
}

std::string_view int4_method_name(Int4Method m) { return kMethodNames[size_t(m)].name; }

uint16_t int4_rtn_group(const float* g, int8_t* q) {
  const float s = group_amax(g) / 7.0f;
  quantize_with(g, s, q);
  return f32_to_bf16(s);
}

uint16_t int4_rtn_ct_group(const float* g, int8_t* q) {
  const float s = group_amax(g) / 7.5f;
#pragma omp simd
  for (int j = 0; j < kG; ++j) q[j] = int8_t(round_half_even_small(clampf(g[j] / s, -8.0f, 7.0f)));
  return f32_to_bf16(s);
}

uint16_t int4_mse_group(const float* g, int8_t* q) { return int4_mse_group_weighted(g, nullptr, q); }

uint16_t int4_mse_group_weighted(const float* g, const float* imp, int8_t* q) {
  const float base = group_amax(g) / 7.0f;
  uint16_t best = 0;
  float best_err = std::numeric_limits<float>::infinity();
  auto consider = [&](uint16_t sb) {
    const float s = bf16_to_f32(sb);
    if (!(s > 0) || !std::isfinite(s)) return;
    const float e = imp ? group_weighted_sq_err(g, imp, s) : group_sq_err(g, s);
    if (e < best_err) best_err = e, best = sb;  // strict: the earlier candidate wins ties
  };
  for (int i = 0; i < kMseGridPoints; ++i) {
    const float alpha = kMseAlphaLo + (kMseAlphaHi - kMseAlphaLo) * float(i) / float(kMseGridPoints - 1);
    consider(f32_to_bf16(base * alpha));
  }
  // Positive bf16 bit patterns are ordered like their values, so ±k in the bits steps through neighbours.
  const uint16_t grid_best = best;
  for (int k = 1; k <= kMseRefineUlps; ++k) {
    consider(uint16_t(grid_best - k));
    consider(uint16_t(grid_best + k));
  }
  quantize_with(g, bf16_to_f32(best), q);
  return best;
}

WeightError weight_error(const float* ref, const float* approx, int64_t n) {
  double acc_e[4] = {}, acc_r[4] = {};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    for (int l = 0; l < 4; ++l) {
      const double d = double(approx[k + l]) - double(ref[k + l]);
      acc_e[l] += d * d;
      acc_r[l] += double(ref[k + l]) * double(ref[k + l]);
    }
  }
  for (; k < n; ++k) {
    const double d = double(approx[k]) - double(ref[k]);
    acc_e[0] += d * d;
    acc_r[0] += double(ref[k]) * double(ref[k]);
  }
  return {(acc_e[0] + acc_e[1]) + (acc_e[2] + acc_e[3]), (acc_r[0] + acc_r[1]) + (acc_r[2] + acc_r[3])};
}

Int4Result quantize_int4(Int4Method m, const float* w, int64_t out, int64_t in) {
  HLWQ_CHECK(out > 0 && in > 0 && in % kG == 0, "quantize_int4: shape [{}, {}] needs in % {} == 0", out, in, kG);
  const bool cascade = m == Int4Method::hlwq_cascade || m == Int4Method::hlwq_cascade_lm5;
  const std::optional<HlwqCodebook> cb = cascade ? std::optional<HlwqCodebook>(cascade_table(m)) : std::nullopt;
  Int4Result r;
  r.out = out;
  r.in = in;
  r.packed.resize(size_t(out * (in / kInt4PerWord)));
  r.scale.resize(size_t(out * (in / kG)));
  std::vector<WeightError> row_err(static_cast<size_t>(out));  // summed in row order below: thread-count independent
  int64_t first_bad_row = out;
  // Per-thread scratch is allocated here, not inside the parallel region: an exception (bad_alloc) escaping an
  // OpenMP region is std::terminate. num_threads pins the team to at most nt, so every thread has a slice.
  // Called from quantize_model's per-item parallel loop the region is nested and inactive (one thread): size
  // for that, or 128 concurrent items would each allocate scratch for 128 threads.
  const int nt = omp_get_active_level() >= omp_get_max_active_levels() ? 1 : std::max(1, omp_get_max_threads());
  std::vector<float> scratch_all(cascade ? size_t(in) * size_t(nt) : 0);
#pragma omp parallel num_threads(nt)
  {
    float* scratch = cascade ? scratch_all.data() + size_t(omp_get_thread_num()) * size_t(in) : nullptr;
#pragma omp for schedule(static) reduction(min : first_bad_row)
    for (int64_t o = 0; o < out; ++o) {
      const float* row = w + o * in;
      bool finite = true;
      for (int64_t k = 0; k < in; ++k) finite &= std::isfinite(row[k]);
      if (!finite) {
        first_bad_row = std::min(first_bad_row, o);
        continue;
      }
      row_err[size_t(o)] = quantize_row(m, row, in, cb ? &*cb : nullptr, scratch,
                                        r.packed.data() + o * (in / kInt4PerWord), r.scale.data() + o * (in / kG));
    }
  }
  HLWQ_CHECK(first_bad_row == out, "quantize_int4: non-finite weight in row {} of [{}, {}]", first_bad_row, out, in);
  for (const WeightError& e : row_err) r.error += e;
  return r;
}

}  // namespace hlwq
