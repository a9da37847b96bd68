// GPTQ (Frantar et al., 2022): quantize a weight W [out, n] column by column and feed each column's rounding
// error forward into the columns not yet quantized, through the inverse Hessian of the linear's real inputs,
// H = Σ x xᵀ (n × n, x the inputs the linear saw). Each row solves the same problem — min (ŵ − w)ᵀ H (ŵ − w) on
// the grid — so rows are independent given the factor U (upper Cholesky factor of (H + λ·mean(diag H)·I)⁻¹,
// optionally with the columns in activation order): the rows run in parallel chunks, and the result does not
// depend on the thread count.
//
// The grid is pluggable (GptqGrid): compressed-tensors INT4 (symmetric, group 128, bf16 MSE-optimal group scale)
// and native HLWQ (codes on the Lloyd-Max table, fp16 block scale, all in the rotated domain: W and H are
// turned by the block Hadamard transform R first, since y = x Wᵀ = (x R)(W R)ᵀ).
// Group scales are chosen "during" the feedback (from the updated columns when the group's first column is
// reached, columns in input order) or "before" it (from the original W; the only choice with act-order, whose
// column order crosses groups).
// Scale re-fit (GptqOptions::refit, docs/calibration.md): after the column loop each row's group scales are re-fit
// jointly to the codes it chose, by least squares on GPTQ's own loss (ŵ − w)ᵀ Hd (ŵ − w) with ŵ = Σ_g s_g·q_g and
// Hd = H + λ·mean(diag H)·I (the damped Hessian the factor was made from); a row keeps its old scales unless the
// stored (rounded) new ones lower that loss and are all positive. Further rounds run the column loop again with
// the scales fixed at the re-fit values (codes re-chosen under feedback), then re-fit again.
// Invariant (the negative control of the tests): with H = I no error is fed anywhere, and the result equals the
// calibration-free quantizer with the same scale rule.
// Dimension legend: out rows of W, n its columns (= inputs, padded to whole 128-blocks for HLWQ).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/hlwq_codec.h"
#include "quant/hlwq_quant.h"
#include "quant/int4_quant.h"

namespace hlwq {

enum class GptqScales : uint8_t { during, before };

struct GptqOptions {
  double damp = 0.01;      // λ, relative to mean(diag H); raised ×10 (up to 3 times) when H is not positive definite
  bool act_order = false;  // columns in order of decreasing H_ii (implies GptqScales::before)
  GptqScales scales = GptqScales::during;
  // Group scales minimize the error weighted by each column's importance 1/[H⁻¹]_jj = 1/U_jj² (what quantizing
  // column j costs once the later columns have compensated, GPTQ's own loss); off: the plain weight error.
  bool weighted_scales = true;
  // Rounds of scale re-fitting after the column loop: 0 off; 1 re-fit once; k > 1: k − 1 more column loops with
  // the re-fit scales fixed, each followed by a re-fit. Needs the factor made with the same refit (it keeps H).
  int refit = 0;
};

// What GPTQ needs of one input's statistics, prepared once and shared by every linear reading that input.
struct GptqFactor {
  int64_t n = 0;
  std::vector<int32_t> perm;  // [n] working column j is input column perm[j]
  std::vector<float> U;       // [n, n] row-major upper Cholesky factor of (Hp + λ·mean(diag)·I)⁻¹, Hp = H permuted
  double damp = 0;            // the λ that made it positive definite
  std::vector<double> H;      // [n, n] input order, undamped: kept only when GptqOptions::refit > 0 (8·n² bytes)
  double mean_diag = 0;       // mean(diag H) after dead inputs got 1: λ·mean_diag is the damping added
};

// H [n, n] (symmetric, Σ x xᵀ) → the factor. Columns never seen (H_ii = 0) get H_ii = 1: their error feeds nothing.
// Throws when H is not finite or stays indefinite after the damping retries.
GptqFactor gptq_factor(const double* H, int64_t n, const GptqOptions& opt);

// H [in, in] → R H R [np, np] with R the block-diagonal orthonormal Hadamard transform, np = ⌈in/128⌉·128
// (padded inputs are zero): the Hessian of HLWQ's rotated domain.
std::vector<double> hlwq_rotate_hessian(const double* H, int64_t in);

// A quantization grid: scales per (row, group of 128 columns in input order) and per-element rounding.
class GptqGrid {
 public:
  virtual ~GptqGrid() = default;
  // Fixes the scales of group g for rows [r0, r0 + nr) from wg [nr, 128] (row stride ld): the group's columns,
  // with their importances imp[128] (nullptr: all equal).
  virtual void choose_scales(int64_t r0, int64_t nr, int64_t g, const float* wg, int64_t ld, const float* imp) = 0;
  // The grid value nearest v at (row, col) with that group's scale; records the code. Called after choose_scales
  // for the group; concurrent calls touch distinct rows.
  virtual float quantize(int64_t row, int64_t col, float v) = 0;
};

// w [out, n] (input order) → every element quantized on `grid`, error fed forward through f.
void gptq_quantize(const float* w, int64_t out, int64_t n, const GptqFactor& f, const GptqOptions& opt, GptqGrid& grid);

// Compressed-tensors INT4 via GPTQ: same layout and scale rule as quantize_int4(Int4Method::mse) (in % 128 == 0).
Int4Result gptq_int4(const float* w, int64_t out, int64_t in, const GptqFactor& f, const GptqOptions& opt);
// Native HLWQ via GPTQ in the rotated domain: f from hlwq_rotate_hessian; lsb_first packing (hlwq's format).
HlwqPacked gptq_hlwq(const float* w, int64_t out, int64_t in, const GptqFactor& f, const GptqOptions& opt,
                     const HlwqCodebook& cb, int bits, HlwqScale mode);

// Output error Σ_rows (ŵ − w)ᵀ H (ŵ − w) and Σ_rows wᵀ H w: what GPTQ minimizes (the linear's squared output
// error summed over the calibration tokens), reported relative like WeightError.
WeightError output_error(const float* w, const float* wq, int64_t out, int64_t in, const double* H);

}  // namespace hlwq
