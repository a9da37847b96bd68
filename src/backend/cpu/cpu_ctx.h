// CpuCtx: what every CPU op needs besides its operands — the kernel table chosen at load (scalar or AVX2) and the
// per-thread scratch arenas allocated with the backend. Passed by reference; holds no state of its own.
// The optional LinearInputTap sees the input of every linear the forward computes (calibration: hlwq quantize
// --calib); null in inference. bf16_inputs rounds every linear's input to bf16 first, as the CUDA backend's GEMMs
// read their activations: the routed experts the CUDA backend hands to the CPU, so a placement changes no rounding,
// and the GPU tests' CPU reference on models that amplify that rounding (tests/cuda/test_cuda_model.cpp).
#pragma once
#include <cstdint>
#include <functional>

#include "backend/cpu/kernels.h"
#include "backend/cpu/scratch.h"
#include "core/dtype.h"

namespace hlwq {

struct LinearWeight;

// Called with x [T, w.in] (row stride ldx) before the linear w computes y = x wᵀ; a routed expert's linears see
// only the rows of the tokens routed to it. May be called from several threads at once (the tap locks).
using LinearInputTap = std::function<void(const LinearWeight& w, const float* x, int64_t ldx, int64_t T)>;

struct CpuCtx {
  const CpuKernels& k;
  ScratchSet& scratch;
  const LinearInputTap* tap = nullptr;
  bool bf16_inputs = false;
};

// v, or v rounded to bf16 (round to nearest even) under c.bf16_inputs.
inline float linear_input(const CpuCtx& c, float v) { return c.bf16_inputs ? bf16_to_f32(f32_to_bf16(v)) : v; }

}  // namespace hlwq
