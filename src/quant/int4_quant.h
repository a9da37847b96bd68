// INT4 (compressed-tensors, symmetric, group 128) quantization methods and the per-weight entry point.
// Every method maps a group g[128] (fp32) to q[128] ∈ [−8, 7] and one bf16 scale; dequant is q · scale with the
// stored bf16 scale. Methods:
//   rtn                 — the seed: s = max(amax, 1e-10)/7 in fp32, q = clamp(round_half_even(g/s), −8, 7) using
//                         the fp32 s, then s stored as bf16 (bit-for-bit torch's rtn_int4 in tools/fixtures).
//   rtn-ct              — compressed-tensors' observer: s = amax/7.5, q = round_half_even(clamp(g/s, −8, 7)).
//   mse                 — per-group scale minimizing Σ(q·s − g)² with the bf16 s actually stored: 49-point grid
//                         α ∈ [0.55, 1.15] × amax/7, then the neighbouring bf16 values of the best one.
//   hlwq-cascade        — the seed's cascade: HLWQ-Q5 with the seed's unconverged table → decode → bf16 → rtn.
//   hlwq-cascade-lm5    — the same with the converged 5-bit Lloyd-Max table.
// Errors are measured against the original fp32 weight and returned as sums so callers aggregate globally.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace hlwq {

enum class Int4Method : uint8_t { rtn, rtn_ct, mse, hlwq_cascade, hlwq_cascade_lm5 };

// "rtn", "rtn-ct", "mse", "hlwq-cascade", "hlwq-cascade-lm5"; throws listing the valid names.
Int4Method parse_int4_method(std::string_view name);
std::string_view int4_method_name(Int4Method m);

// Group quantizers: g[128] (finite) → q[128]; return the bf16 scale bits.
uint16_t int4_rtn_group(const float* g, int8_t* q);
uint16_t int4_rtn_ct_group(const float* g, int8_t* q);
uint16_t int4_mse_group(const float* g, int8_t* q);
// The same search minimizing Σ imp_j (q_j·s − g_j)² (imp[128] ≥ 0: each input's importance, e.g. GPTQ's
// 1/[H⁻¹]_jj); imp == nullptr is int4_mse_group.
uint16_t int4_mse_group_weighted(const float* g, const float* imp, int8_t* q);

// Σ(approx − ref)² and Σ ref² in double; relative weight MSE = sq_err / sq_ref.
struct WeightError {
  double sq_err = 0, sq_ref = 0;
  double rel() const { return sq_ref > 0 ? sq_err / sq_ref : 0.0; }
  WeightError& operator+=(const WeightError& o) {
    sq_err += o.sq_err;
    sq_ref += o.sq_ref;
    return *this;
  }
};
WeightError weight_error(const float* ref, const float* approx, int64_t n);

struct Int4Result {
  int64_t out = 0, in = 0;
  std::vector<int32_t> packed;  // [out, in/8]   (compressed-tensors weight_packed)
  std::vector<uint16_t> scale;  // [out, in/128] bf16 bits (weight_scale)
  WeightError error;            // dequantized vs w
};

// Quantizes one 2-D weight w [out, in] (in % 128 == 0). Rows run in parallel (OpenMP); the result, error sums
// included, is bit-identical for any thread count. Throws on a non-finite weight, naming the row.
Int4Result quantize_int4(Int4Method m, const float* w, int64_t out, int64_t in);

}  // namespace hlwq
