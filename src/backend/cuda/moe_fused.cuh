// The experts' whole SwiGLU MLP of a decode step in one launch (INT4 experts, Hopper and later): for each tile of
// the slot plan, one thread-block cluster computes h = SiLU(gate x) · up x, exchanges h among its blocks through
// distributed shared memory, and runs the weighted down projection — in place of the grouped gate_up and down
// launches of gemm.cuh, whose kernel boundary, second prologue and second DRAM round trip sit on the decode step's
// critical path 40 times a token (bench/cuda/NOTES.md, twelfth session).
//
// Block r of a cluster of C computes the features of h in the 32-column chunks r, r + C, … (a gate and an up row
// tile per 16 features, k split over 4 warps), pushes them into every block's copy of the tile's h, and after the
// cluster barrier computes the down rows 128·r … (one 16-row tile per warp, all k-units in order). Every output
// element is summed in one fixed order whatever the launch (tile count, cluster placement), so a step with a cache
// gives the same bits as the all-resident one.
// Dimension legend: H hidden (down rows), I expert width (h columns), 8 slots a tile.
#pragma once
#include <cstdint>
#include <iterator>

#include <cuda_runtime_api.h>

#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/gemm.cuh"

namespace hlwq::cuda {

// Cluster sizes the fused launch can take, largest first. Every output element is summed in the same order whatever
// the size (a warp's split-k group and its down tile do not depend on it), so the size is free to follow the plan.
constexpr int kFusedClusters[] = {16, 8, 4};
constexpr int kFusedSizes = int(std::size(kFusedClusters));

// The launch takes the largest cluster size whose clusters for the plan's tiles fit in kFusedMaxWaves waves, else
// the smallest up to kFusedMaxWavesSmallest waves, and the grouped kernels run past that. A block of a cluster of C
// makes 16 / C passes of gate_up and as many down tiles a warp on Qwen3.6's experts (one each at 16), ~6 us a pass
// of dependent loads and math, so small clusters pay at few tiles; large ones pay at many, whose later waves wait for
// whole free groups of SMs. Measured (H200, a layer of Qwen3.6's experts alone, us, uniform routing;
// results/v31b_kernels.log, v33_kernels.log from 128 tokens):
//   tokens (plan tiles)   grouped   C=16    C=8    C=4    C=2
//    1 (9)                  17.3    15.8   19.4   31.4   56.1
//    2 (18)                 29.2    24.2   25.2   32.7   57.1
//    4 (36)                 48.1    36.0   37.7   42.9   58.9
//    8 (72)                 60.9    57.8   51.1   47.2   60.5
//   16 (144)                98.7    98.6   86.3   87.1   85.2
//   32 (260)               134.3   154.7  129.1  126.7  131.7
//   64 (296)               180.6   215.4  175.8  167.6
//  128 (368)               221.1   252.8  203.5  186.6
//  256 (512)               263.8   355.0  274.3  250.4
//  512 (800)               453.9   609.3  456.4  418.0
// Inside the decode step the smaller sizes gained less than alone: three waves (16, 16, 16, 8, 4, 2 above) made the
// forward benchmark's B = 16 step 3.9 % faster but its B = 8 step 3.6 % slower than 16 at 8 tokens, though its MoE
// block alone was 2 % faster (results/v31*_forward.log; not understood: the routing there is concentrated, ~21
// experts a layer at B = 8). Six waves keep 16 up to 8 tokens and take 8 at 16 tokens; 4 runs from 32 tokens to
// 512 (13 waves of 62 clusters); 2 is never more than a microsecond ahead and is left out. Past 512 tokens nothing
// was measured, and the grouped kernels run.
constexpr int64_t kFusedMaxWaves = 6;
constexpr int64_t kFusedMaxWavesSmallest = 13;

// Whether and how the fused launch runs for a layer's experts, decided once per workspace; every choice depends on
// the plan's size alone, so a step with a cache runs what the all-resident one runs.
struct FusedMlp {
  // plan tiles whose clusters of kFusedClusters[i] blocks are all resident at once; 0: that size does not run here
  // (not INT4, no clusters, h too wide, or the device cannot co-schedule it)
  int64_t wave_tiles[kFusedSizes] = {};
  int smallest() const;  // the smallest size that runs here; 0: none does
  bool available() const { return smallest() > 0; }
  int cluster_for(int64_t tiles) const;  // the size a launch of `tiles` plan tiles takes; 0: the grouped kernels
  bool runs(int64_t tiles) const { return cluster_for(tiles) > 0; }
};
FusedMlp plan_fused_mlp(const GroupedLinear& gu, const GroupedLinear& dn);

// For every tile t < tiles with tile_mat[t] = m ≥ 0, slot s = 8t + i (i < 8, s < n_slots):
//   h = bf16(SiLU(gate_m · x_s) · up_m · x_s), written into h_xfrag (xfrag, dn.in_pad columns; as gemm_grouped's
//   swiglu epilogue, for the calibration statistics), and y [s, 0..H) = slot_w[s] · (down_m · h),
// where x_s is row x_rows[s] of the token fragments x_tok (−1: zeros). f must be available() (any tile count runs;
// runs() says where it pays). ct (expert_cache_dev.cuh): the experts the cache's plan admitted this step, which
// their tiles read from host memory and write into their slots while computing — the copy overlaps the compute
// of the same tiles instead of preceding the launch; tile_mat must then be the whole plan and hold a tile for
// every admitted expert. cluster: 0 = f.cluster_for(tiles) (past where it pays, f.smallest()); else that size
// (benchmarks and tests: one of kFusedClusters that runs here).
void fused_mlp(const FusedMlp& f, const GroupedLinear& gu, const GroupedLinear& dn, const uint32_t* x_tok,
               const int* x_rows, const int* tile_mat, int64_t tiles, int64_t n_slots, uint32_t* h_xfrag, float* y,
               int64_t ldy, const float* slot_w, cudaStream_t st, const CopyThrough& ct = {}, int cluster = 0);

}  // namespace hlwq::cuda
