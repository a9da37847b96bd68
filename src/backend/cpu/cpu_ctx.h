// CpuCtx: what every CPU op needs besides its operands — the kernel table chosen at load (scalar or AVX2) and the
// per-thread scratch arenas allocated with the backend. Passed by reference; holds no state of its own.
#pragma once
#include "backend/cpu/kernels.h"
#include "backend/cpu/scratch.h"

namespace hlwq {

struct CpuCtx {
  const CpuKernels& k;
  ScratchSet& scratch;
};

}  // namespace hlwq
