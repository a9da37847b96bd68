// Launch shape of the fragment-order GEMM kernels (gemm.cu, hlwq_gemm.cu), host only: how many of a block's 8 warps
// split the k-units of one row group (`split`; the block's other warps take further groups) and how many blocks run
// along the rows. Both kernels keep one round of weight loads in flight per warp (units_per_round k-units), then
// compute it, then reduce the split through shared memory.
//
// Two regimes (bench/cuda/NOTES.md, eighth session, has the measurements):
// - One wave: where some split of at least one load round per warp puts every block of the launch on the GPU at
//   once, the largest such split is taken (the most loads in flight). A decode GEMV is a single DRAM round trip
//   per warp; a launch that needs a second wave of blocks pays that round trip twice, and with programmatic
//   dependent launch the next kernel is not released until the second wave has started. The earlier rule (split
//   until ≥ 16 warps per SM) overshot the resident capacity for the MoE experts at one token (288 blocks for 264
//   places at 127 registers a thread) and for the 2048→8192-class matrices.
// - Otherwise (prefill tiles, the lm_head) the earlier rule: one load round per warp, then split further until the
//   grid holds ≥ 16 warps per SM, at most 4 blocks per SM persistent along the rows, activations staged in shared
//   memory when a block's warps share them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_check.h"

namespace hlwq::cuda {

constexpr int kGemmWarps = 8;  // warps per block of both GEMM kernels

struct GemmLaunchProblem {
  int64_t n_groups = 0;     // row groups of the matrix (RT row tiles of 16 rows each)
  int ku = 0;               // k-units (128 columns) per row
  int units_per_round = 1;  // k-units whose weight loads one warp keeps in flight at once
  int64_t tiles = 1;        // token tiles the shape is chosen for (the whole plan's count for a part of a plan)
  int sms = 1;              // streaming multiprocessors
  size_t x_bytes = 0;       // activations of one token tile, which the fallback may stage in shared memory
};

struct GemmLaunchShape {
  int split = 1;        // warps per row group (1, 2, 4 or 8)
  int64_t blocks = 1;   // grid.x: blocks along the rows (persistent when fewer than the groups need)
  bool x_smem = false;  // activations staged in shared memory (x_bytes of dynamic shared memory)
  bool one_wave = false;
};

// blocks_per_sm(smem): blocks of the kernel resident on one SM with `smem` bytes of dynamic shared memory
// (cudaOccupancyMaxActiveBlocksPerMultiprocessor).
GemmLaunchShape gemm_launch_shape(const GemmLaunchProblem& p, const std::function<int(size_t)>& blocks_per_sm);

// The same for a kernel of kGemmWarps warps a block, its occupancy asked of the runtime.
template <typename Kernel>
GemmLaunchShape gemm_launch_shape_for(Kernel kern, const GemmLaunchProblem& p, const char* what) {
  return gemm_launch_shape(p, [&](size_t smem) {
    int n = 0;
    HLWQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, reinterpret_cast<const void*>(kern),
                                                                  kGemmWarps * 32, smem),
                    "{} gemm: occupancy with {} bytes of shared memory", what, smem);
    return n;
  });
}

}  // namespace hlwq::cuda
