// Per-op error budgets of the CUDA differential tests: norm-wise relative error ‖gpu − cpu‖ / ‖cpu‖ against the
// CPU reference functions (fp32 activations). Each has its provenance.
#pragma once

namespace hlwq::test {

// fp32 only, same formula, different summation order: ≈ √n · 2⁻²⁴ for n ≤ 4096 terms is < 4e-6.
inline constexpr double kFp32Rel = 1e-5;
// GEMMs fed bf16-exact activations: INT4 dequantization and bf16 products are exact in the mma, only the fp32
// accumulation order differs (as kFp32Rel).
inline constexpr double kExactInputGemmRel = 1e-5;
// GEMMs fed arbitrary fp32 activations, rounded to bf16 by the kernel: unit roundoff 2⁻⁹ per element, random signs
// give ≈ 2⁻⁹/√3 ≈ 1.1e-3 norm-wise; 4.5× margin.
inline constexpr double kBf16ActivationRel = 5e-3;
// MoE block with bf16-exact input: the only rounding is SiLU(gate)·up → bf16 before down (as above), summed over
// 9 experts of random weights.
inline constexpr double kMoeRel = 5e-3;
// GDN layer with bf16-exact input: o → bf16 before out_proj (as above); the recurrence itself is fp32.
inline constexpr double kGdnLayerRel = 5e-3;
// GDN recurrent state after the layer: fp32 recurrence, different summation order over dk = 128 per step.
inline constexpr double kGdnStateRel = 1e-4;
// Attention layer: K and V cached as bf16 (2⁻⁹ each) and the attention output → bf16 before o_proj: three
// roundings of ≈ 1.1e-3 norm-wise; 3× margin.
inline constexpr double kAttentionRel = 1e-2;
// The tensor-core prefill attention against the CUDA-core kernel on the same cache: q and the probabilities carry
// ~16 bits (hi + lo bf16 parts) against fp32, and sums run in another order; measured 8e-4 .. 1.3e-3 with P in one
// bf16 part (H200), so 1e-4 fails that.
inline constexpr double kAttentionKernelsRel = 1e-4;
// Cached keys (post norm and RoPE) vs the CPU's fp32 cache: one bf16 rounding, ≤ 2⁻⁹ per element.
inline constexpr double kKvCacheRel = 3e-3;

// HLWQ GEMM (hlwq_gemm.cuh) fed arbitrary fp32 activations: the rotated activations are rounded to bf16 (2⁻⁹ per
// element, ≈ 1.1e-3 norm-wise as above); the codebook values enter the MMAs as a bf16 hi + lo pair (≈ 2⁻¹⁷, no
// budget of its own: CudaHlwq.CodebookValuesAreExact checks it at kExactInputGemmRel). A wrong layout or code
// order gives errors of order 1 (CudaHlwq.FlippedCodeOrderAndWrongWeightsFail).
inline constexpr double kHlwqGemmRel = kBf16ActivationRel;
// MoE block with HLWQ experts, bf16-exact input: xn rotated → bf16, SiLU(gate)·up (fp32) rotated → bf16: two
// roundings of ≈ 1.1e-3 norm-wise, ≈ 1.6e-3 together; 6× margin.
inline constexpr double kHlwqMoeRel = 1e-2;

}  // namespace hlwq::test
