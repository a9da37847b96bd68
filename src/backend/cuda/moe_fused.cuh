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

#include <cuda_runtime_api.h>

#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/gemm.cuh"

namespace hlwq::cuda {

// Cluster sizes the fused launch can take, largest first. Every output element is summed in the same order whatever
// the size (a warp's split-k group and its down tile do not depend on it), so the size is free to follow the plan.
constexpr int kFusedClusters[] = {16, 8, 4, 2};
constexpr int kFusedSizes = 4;

// Cost of a launch in units of a block's passes: a block of a cluster of C makes ⌈(gate_up groups / 2) / C⌉ passes
// over its tile's gate_up and ⌈down row tiles / 8C⌉ over its down rows (one each at 16 on Qwen3.6's experts), plus
// a fixed part (prologue, x loads, the exchange's barriers) worth about two; waves of clusters run one after
// another. The fused launch replaces the two grouped ones up to kFusedMaxUnits — six waves of 16-block clusters,
// every plan up to 8 tokens, where the grouped kernels were measured to catch up with 16-block clusters (H200, a
// layer of Qwen3.6's experts, fused vs grouped, us; results/v27b_*: 1 token 15.4 vs 17.4, 4: 37.4 vs 48.0, 8: 58.7
// vs 60.9, 16: 99.4 vs 98.8).
constexpr int64_t kFusedFixedUnits = 2;
constexpr int64_t kFusedMaxUnits = 6 * (2 + kFusedFixedUnits);

// Whether and how the fused launch runs for a layer's experts, decided once per workspace; every choice depends on
// the plan's size alone, so a step with a cache runs what the all-resident one runs.
struct FusedMlp {
  // plan tiles whose clusters of kFusedClusters[i] blocks are all resident at once; 0: that size does not run here
  // (not INT4, no clusters, h too wide, or the device cannot co-schedule it)
  int64_t wave_tiles[kFusedSizes] = {};
  int64_t passes[kFusedSizes] = {};  // a block's gate_up and down passes at that size
  bool available() const;
  int cluster_for(int64_t tiles) const;  // the cluster size of the cheapest launch of `tiles` plan tiles
  int64_t units(int64_t tiles) const;    // that launch's cost in units (kFusedFixedUnits)
  bool runs(int64_t tiles) const { return available() && units(tiles) <= kFusedMaxUnits; }
};
FusedMlp plan_fused_mlp(const GroupedLinear& gu, const GroupedLinear& dn);

// For every tile t < tiles with tile_mat[t] = m ≥ 0, slot s = 8t + i (i < 8, s < n_slots):
//   h = bf16(SiLU(gate_m · x_s) · up_m · x_s), written into h_xfrag (xfrag, dn.in_pad columns; as gemm_grouped's
//   swiglu epilogue, for the calibration statistics), and y [s, 0..H) = slot_w[s] · (down_m · h),
// where x_s is row x_rows[s] of the token fragments x_tok (−1: zeros). f must be available() (any tile count runs;
// runs() says where it pays). ct (expert_cache_dev.cuh): the experts the cache's plan admitted this step, which
// their tiles read from host memory and write into their slots while computing — the copy overlaps the compute
// of the same tiles instead of preceding the launch; tile_mat must then be the whole plan and hold a tile for
// every admitted expert. cluster: 0 = f.cluster_for(tiles), else that size (benchmarks and tests: one of kFusedClusters that runs here).
void fused_mlp(const FusedMlp& f, const GroupedLinear& gu, const GroupedLinear& dn, const uint32_t* x_tok,
               const int* x_rows, const int* tile_mat, int64_t tiles, int64_t n_slots, uint32_t* h_xfrag, float* y,
               int64_t ldy, const float* slot_w, cudaStream_t st, const CopyThrough& ct = {}, int cluster = 0);

}  // namespace hlwq::cuda
