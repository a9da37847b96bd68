// A whole MoE block on the device (SPEC §5) in 6 launches whatever the batch: pack xn → router+shared-gate GEMM
// (one bf16 matrix [E + 1, H]) → route (moe_route.cuh) → grouped gate_up with SiLU·up (all selected experts and the
// shared expert in one launch; each slot reads its token's row of the packed xn through the plan) → grouped down,
// scaled by the routing weight → combine per token (optionally added onto the residual stream). INT4 experts at a
// few tokens (Hopper and later) run gate_up and down as one launch (moe_fused.cuh), and a one-token step's router
// GEMM and routing are one launch too (moe_router_one.cuh).
// Expert weights are INT4 (u4b8_g128 checkpoints), HLWQ (native or seed Q5 checkpoints; then xn is packed rotated
// and h rotated in place before down: hlwq_gemm.cuh; HLWQ experts gather the rotated xn by slot, one launch more) or bf16 (dense checkpoints), all resident; a shared expert of
// width S·I runs as S slices of the routed experts' width I (moe_route.cuh; Qwen3.5/3.6: S = 1, the demo model 2).
// Routed experts may run on the CPU instead (MoeCpuPart, cpu_experts.cuh): the whole routed part of a layer
// (--n-cpu-moe: upload_moe_cpu keeps none of its experts on the device), or the misses the slot plan hands over
// (--cpu-experts); their tiles are skipped by the grouped kernels and their rows join before the combine.
// With a cache, a large batch runs the two grouped GEMMs per round of a whole-layer stream of its missing experts
// instead (MoeStepHooks::stream, moe_stream.cuh).
// Dimension legend: T tokens, H hidden, E experts, k active, I expert width, S shared parts, M = E + S matrices.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/cpu_experts.cuh"
#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/moe_fused.cuh"
#include "backend/cuda/moe_route.cuh"
#include "backend/cuda/moe_router_one.cuh"
#include "backend/cuda/norm.cuh"
#include "model/weights.h"

namespace hlwq::cuda {

struct MoeLayerDev {
  int64_t H = 0, E = 0, k = 0, I = 0;
  int64_t n_shared = 0;                     // S: parts of the shared expert (0: none)
  PackedLinear router;                      // bf16 [E (+1 shared gate), H]
  std::vector<PackedLinear> gate_up, down;  // [M] resident matrices (pack_gate_up / pack_linear); with a
                                            // cache only the S shared parts
  GroupedLinear gu, dn;                     // pointer tables over all M matrices
  std::unique_ptr<ExpertCacheDev> cache;    // routed experts in host memory behind a slot cache (or null)
  DeviceBuffer<uint8_t> routed;             // [E][B] the routed experts of make_routed_resident (else empty)
  int64_t expert_bytes() const;             // bytes of one routed expert (gate_up + down, packed)
};
// Every expert resident on the device.
MoeLayerDev upload_moe(const MoeWeights& w, int64_t n_active);
// Routed experts placed later (their table entries null until then): router and shared expert resident; the
// routed experts then either all go to the device (make_routed_resident) or stay in host memory behind a slot cache
// (attach_expert_cache). `layout` is how the routed experts are packed (expert_store.h).
MoeLayerDev upload_moe_deferred(const MoeWeights& w, int64_t n_active, const ExpertLayout& layout);
// Routed experts computed on the CPU only (--n-cpu-moe): router and shared expert resident, no routed expert on the
// device (their table entries are null; every routed tile goes to the CPU, MoeCpuPart::all_routed).
MoeLayerDev upload_moe_cpu(const MoeWeights& w, int64_t n_active);
// The routed experts of an upload_moe_deferred layer left in host memory (host_experts: the device's view of the
// layer's [E][B] pinned copies, laid out as `layout`), read in place over PCIe until copied into one of n_slots
// device slots (1 ≤ n_slots; more than E is clamped) of the layer's cache.
void attach_expert_cache(MoeLayerDev& L, const uint8_t* host_experts, const ExpertLayout& layout, int64_t n_slots);
// Where a cache would hold every routed expert (a cache size or budget of E slots): the routed experts of an
// upload_moe_deferred layer copied whole from host_experts (any host memory, [E][B] as `layout`) to the device, the
// tables pointed at the copies, and no cache — the layer then runs as an upload_moe one does (the same kernels on
// the same bytes: the same bits), with no per-step plan, copies or prefetch.
void make_routed_resident(MoeLayerDev& L, const uint8_t* host_experts, const ExpertLayout& layout);

// Scratch for up to max_T tokens.
struct MoeWorkspace {
  int64_t max_T = 0, max_tiles = 0;
  DeviceBuffer<uint32_t> x_tok, x_slot, h;  // xfrag: xn by token, xn rotated by slot (HLWQ only), SiLU(gate)·up by slot
  DeviceBuffer<float> logits, y, slot_w, topk_w;
  DeviceBuffer<float> h32;  // HLWQ experts only: SiLU(gate)·up by slot [slots, I] in fp32, before its rotation
  DeviceBuffer<int> topk_ids, slot_tok, tile_mat, tok_slot;
  DeviceBuffer<uint8_t> cpu_mark;  // [E] experts the slot plan hands to the CPU this step
  FusedMlp fused;                  // gate_up and down in one launch where a plan fits it (moe_fused.cuh)
  RouterOne router_one;            // a one-token step's router and plan in one launch (moe_router_one.cuh)
};
MoeWorkspace make_moe_workspace(const MoeLayerDev& L, int64_t max_T);

class MoePrefetcher;
class MoeLayerStreamer;
// Optional parts of a step (offload-trace): a replayed routing trace's ids [T, k] for this layer (moe_route.cuh),
// the prefetch of the next layer's predicted experts (moe_prefetch.cuh) — `layer` is this layer's index, `next`
// the next MoE layer (null for the last) — and the whole-layer streaming of large batches (moe_stream.cuh; it
// synchronizes the stream, so it is null while a graph is recorded).
struct MoeStepHooks {
  const int* route_ids = nullptr;
  MoePrefetcher* prefetch = nullptr;
  int layer = 0;
  const MoeLayerDev* next = nullptr;
  MoeLayerStreamer* stream = nullptr;
};

// Routed experts of one moe_forward call computed on the CPU.
struct MoeCpuPart {
  CpuExpertsDev* cpu = nullptr;
  int layer = 0;                          // the layer's index in the model (the CPU reads its weights)
  bool all_routed = false;                // every routed expert (--n-cpu-moe), else the plan's choice
  CpuExperts mode = CpuExperts::off;      // with a cache: which misses go to the CPU (cpu_split.h)
  CpuSplitCosts costs;
};

// The RMSNorms around a MoE block that moe_forward fuses, each a kernel boundary fewer on the decode step's path.
// Before: x_packed says the norm that wrote xn also wrote its fragments into ws.x_tok (norm.cuh), so the router's
// pack is skipped. After (h non-null): the next norm takes the experts' weighted sum as its residual, h [T, H] +=
// sum; y = norm(h) · (1 + w), with y's fragments where `after`.xfrag is set, in place of moe_combine (out and
// accumulate are then unused). Both are bit for bit the unfused sequence.
struct MoeNorms {
  bool x_packed = false;
  float* h = nullptr;
  const float* w = nullptr;
  float eps = 0.f;
  float* y = nullptr;
  NormFusion after;  // its xfrag and in_pad (moe_forward sets the slot residual)
};

// out [T, H] (+)= moe(xn [T, H]); hooks: trace and prefetch; cpu: null or the routed experts the CPU computes;
// norms: the fused neighbours above.
void moe_forward(const MoeLayerDev& L, MoeWorkspace& ws, const float* xn, int64_t T, float* out, bool accumulate,
                 cudaStream_t st, const MoeStepHooks& hooks = {}, const MoeCpuPart* cpu = nullptr,
                 const MoeNorms& norms = {});

}  // namespace hlwq::cuda
