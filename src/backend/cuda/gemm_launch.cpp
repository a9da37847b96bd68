// Launch shape of the GEMM kernels (see gemm_launch.h).
#include "backend/cuda/gemm_launch.h"

#include <algorithm>

#include "core/error.h"

namespace hlwq::cuda {

GemmLaunchShape gemm_launch_shape(const GemmLaunchProblem& p, const std::function<int(size_t)>& blocks_per_sm) {
  HLWQ_CHECK(p.n_groups > 0 && p.ku > 0 && p.units_per_round > 0 && p.tiles > 0 && p.sms > 0,
             "gemm launch shape: {} row groups, {} k-units, {} per round, {} tiles, {} SMs", p.n_groups, p.ku,
             p.units_per_round, p.tiles, p.sms);
  int split_min = 1;  // one load round per warp
  while (split_min < kGemmWarps && split_min * p.units_per_round < p.ku) split_min *= 2;

  // One wave: the largest split (≥ one round per warp; above that, no warp without a k-unit) whose blocks are all
  // resident at once. The fewest warps that hold the matrix in one round was measured slower (NOTES.md, run 7).
  const int64_t resident = int64_t(p.sms) * std::max(0, blocks_per_sm(0));
  for (int s = kGemmWarps; s >= split_min; s /= 2) {
    if (s > split_min && s > p.ku) continue;
    const int64_t G = kGemmWarps / s, blocks = (p.n_groups + G - 1) / G;
    if (blocks * p.tiles <= resident) return GemmLaunchShape{s, blocks, false, true};
  }

  // Otherwise: split until the grid holds ≥ 16 warps per SM, persistent blocks along the rows.
  GemmLaunchShape r;
  r.split = split_min;
  while (r.split < kGemmWarps && r.split * 2 <= p.ku && p.n_groups * r.split * p.tiles < int64_t(p.sms) * 16)
    r.split *= 2;
  const int64_t G = kGemmWarps / r.split, need = (p.n_groups + G - 1) / G;
  const int64_t cap = std::max<int64_t>(1, (int64_t(p.sms) * 4 + p.tiles - 1) / p.tiles);
  r.blocks = std::min(need, cap);
  r.x_smem = r.split < kGemmWarps && p.x_bytes <= size_t(96) << 10;
  return r;
}

}  // namespace hlwq::cuda
