// MoE block orchestration (see moe.cuh).
#include "backend/cuda/moe.cuh"

#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/expert_store.h"
#include "backend/cuda/hlwq_gemm.cuh"
#include "backend/cuda/moe_prefetch.cuh"
#include "backend/cuda/moe_stream.cuh"

namespace hlwq::cuda {

int64_t MoeLayerDev::expert_bytes() const {
  if (cache) return cache->layout.bytes;
  if (routed.size() > 0) return int64_t(routed.size()) / E;
  return gate_up.empty() ? 0 : gate_up[0].bytes() + down[0].bytes();
}

namespace {

// Whether the gate_up matrices read the tokens' plain fragments (x_tok, the router's input) through the slot plan.
bool reads_tokens(const MoeLayerDev& L) { return L.gu.format != PackedFormat::hlwq; }

// Router (+ shared gate) and the shape checks both uploads share; sets H, E, k, I, n_shared and the router.
MoeLayerDev upload_router(const MoeWeights& w, int64_t n_active) {
  MoeLayerDev L;
  L.H = w.router.in;
  L.E = w.router.out;
  L.k = n_active;
  HLWQ_CHECK(!w.experts.empty() && int64_t(w.experts.size()) == L.E, "MoE {}: {} experts, router has {} rows",
             w.router.name, w.experts.size(), L.E);
  L.I = w.experts[0].gate_proj.out;
  if (w.has_shared) {
    const int64_t Is = w.shared.gate_proj.out;
    HLWQ_CHECK(Is % L.I == 0, "MoE {}: shared expert width {} is not a multiple of the experts' {} (the CUDA MoE "
               "kernels run it as expert-width slices)", w.router.name, Is, L.I);
    L.n_shared = Is / L.I;
  }
  std::vector<RowRange> rr{{&w.router, 0, L.E}};
  if (L.n_shared > 0) rr.push_back({&w.shared_gate, 0, 1});
  L.router = upload_packed(pack_rows(PackedFormat::bf16, rr, w.router.name.c_str()), w.router.name.c_str());
  return L;
}

PackedFormat expert_format(const MoeWeights& w) { return packed_format_of(w.experts[0].gate_proj); }

// Features [s·I, (s+1)·I) of the shared expert as one more expert-width expert.
template <typename F>
void for_shared_parts(const MoeWeights& w, const MoeLayerDev& L, F add) {
  for (int64_t s = 0; s < L.n_shared; ++s) {
    std::vector<uint8_t> down_cols;
    ExpertWeights part{row_slice(w.shared.gate_proj, s * L.I, L.I), row_slice(w.shared.up_proj, s * L.I, L.I),
                       column_slice(w.shared.down_proj, s * L.I, L.I, down_cols)};
    add(part);
  }
}

// Mixed-width HLWQ checkpoints (docs/hlwq-format.md, overrides): the grouped expert GEMM of a layer runs one
// width and one codebook for all its routed experts and the shared expert's parts (gate_up and down alike, as
// the host expert store keeps one layout), so a layer that mixes widths is refused here, naming both matrices.
void check_one_hlwq_width(const MoeWeights& w) {
  if (w.experts.empty() || w.experts[0].gate_proj.format != LinearFormat::hlwq) return;
  const LinearWeight& ref = w.experts[0].gate_proj;
  auto check = [&](const LinearWeight& m) {
    if (m.format != LinearFormat::hlwq) return;  // a format mismatch is expert_format's to report
    HLWQ_CHECK(m.hlwq.bits == ref.hlwq.bits &&
                   std::equal(m.hlwq.codebook, m.hlwq.codebook + (1 << m.hlwq.bits), ref.hlwq.codebook),
               "{}: {}-bit HLWQ codes, but {} has {}-bit (or another codebook): on the GPU the routed and shared "
               "experts of a layer need one width and codebook (quantize them with one --bits-for width)",
               m.name, m.hlwq.bits, ref.name, ref.hlwq.bits);
  };
  for (const ExpertWeights& e : w.experts)
    for (const LinearWeight* m : {&e.gate_proj, &e.up_proj, &e.down_proj}) check(*m);
  if (w.has_shared)
    for (const LinearWeight* m : {&w.shared.gate_proj, &w.shared.up_proj, &w.shared.down_proj}) check(*m);
}

// The four arrays of each of E experts packed back to back as `lay` from `base` (host copies or device storage).
struct ExpertPointers {
  std::vector<const uint32_t*> gq, dq;
  std::vector<const float*> gs, ds;  // null for bf16 experts (no scales)
};
ExpertPointers expert_pointers(const uint8_t* base, const ExpertLayout& lay, int64_t E) {
  ExpertPointers t;
  for (int64_t e = 0; e < E; ++e) {
    const uint8_t* x = base + e * lay.bytes;
    t.gq.push_back(reinterpret_cast<const uint32_t*>(x + lay.gu_q));
    t.dq.push_back(reinterpret_cast<const uint32_t*>(x + lay.dn_q));
    t.gs.push_back(lay.int4 ? reinterpret_cast<const float*>(x + lay.gu_s) : nullptr);
    t.ds.push_back(lay.int4 ? reinterpret_cast<const float*>(x + lay.dn_s) : nullptr);
  }
  return t;
}

}  // namespace

MoeLayerDev upload_moe(const MoeWeights& w, int64_t n_active) {
  check_one_hlwq_width(w);
  MoeLayerDev L = upload_router(w, n_active);
  const PackedFormat f =
      expert_format(w);
  auto add = [&](const ExpertWeights& e) {
    L.gate_up.push_back(upload_packed(pack_gate_up(f, e.gate_proj, e.up_proj), e.gate_proj.name.c_str()));
    L.down.push_back(upload_packed(pack_linear(f, e.down_proj), e.down_proj.name.c_str()));
  };
  for (const auto& e : w.experts) add(e);
  for_shared_parts(w, L, add);
  std::vector<const PackedLinear*> gu, dn;
  for (size_t i = 0; i < L.gate_up.size(); ++i) gu.push_back(&L.gate_up[i]), dn.push_back(&L.down[i]);
  L.gu = make_grouped(gu, "MoE gate_up");
  L.dn = make_grouped(dn, "MoE down");
  return L;
}

namespace {
// Router and shared parts resident; the tables' routed entries [0, E) null (placed later, or never: CPU experts),
// shaped as one routed expert packed as `lay`. HLWQ: the tables' width and codebook are those of `codes`.
MoeLayerDev upload_without_routed(const MoeWeights& w, int64_t n_active, const ExpertLayout& lay,
                                  const LinearWeight& codes) {
  MoeLayerDev L = upload_router(w, n_active);
  const PackedFormat f = expert_format(w);
  for_shared_parts(w, L, [&](const ExpertWeights& e) {
    L.gate_up.push_back(upload_packed(pack_gate_up(f, e.gate_proj, e.up_proj), e.gate_proj.name.c_str()));
    L.down.push_back(upload_packed(pack_linear(f, e.down_proj), e.down_proj.name.c_str()));
  });
  std::vector<const uint32_t*> gq(size_t(L.E), nullptr), dq(size_t(L.E), nullptr);
  std::vector<const float*> gs(size_t(L.E), nullptr), ds(size_t(L.E), nullptr);
  for (size_t i = 0; i < L.gate_up.size(); ++i) {
    gq.push_back(L.gate_up[i].q.get()), gs.push_back(L.gate_up[i].scale.get());
    dq.push_back(L.down[i].q.get()), ds.push_back(L.down[i].scale.get());
  }
  const int bits = f == PackedFormat::hlwq ? codes.hlwq.bits : 0;
  const std::vector<float> cb =
      bits ? std::vector<float>(codes.hlwq.codebook, codes.hlwq.codebook + (1 << bits)) : std::vector<float>{};
  L.gu = make_grouped_ptrs(f, lay.gu_out, lay.gu_in, lay.gu_out_pad, lay.gu_in_pad, gq, gs, "MoE gate_up", bits, cb);
  L.dn = make_grouped_ptrs(f, lay.dn_out, lay.dn_in, lay.dn_out_pad, lay.dn_in_pad, dq, ds, "MoE down", bits, cb);
  return L;
}
}  // namespace

MoeLayerDev upload_moe_deferred(const MoeWeights& w, int64_t n_active, const ExpertLayout& lay) {
  check_one_hlwq_width(w);  // so the routed experts' codebook is the shared expert's too
  const LinearWeight& codes = w.experts[0].gate_proj;
  MoeLayerDev L = upload_without_routed(w, n_active, lay, codes);
  const PackedFormat f = expert_format(w);
  const int bits = f == PackedFormat::hlwq ? codes.hlwq.bits : 0;
  HLWQ_CHECK((f != PackedFormat::bf16) == lay.int4 && bits == lay.hlwq_bits && lay.gu_in == L.H && lay.dn_in == L.I,
             "MoE {}: the expert store's layout does not match this layer", w.router.name);
  return L;
}

MoeLayerDev upload_moe_cpu(const MoeWeights& w, int64_t n_active) {
  // the routed entries are never read (their tiles go to the CPU); HLWQ: the tables carry the shared expert's width
  // and codebook, the only matrices the GPU runs here (without one, the routed experts', whose entries stay null)
  const LinearWeight& codes = w.has_shared ? w.shared.gate_proj : w.experts[0].gate_proj;
  return upload_without_routed(w, n_active, expert_layout(w), codes);
}

namespace {
// Entries [0, E) of the layer's tables pointed at the E experts packed as `lay` from `base` (host or device); the
// shared parts after them keep theirs.
void point_routed(MoeLayerDev& L, const uint8_t* base, const ExpertLayout& lay) {
  const ExpertPointers t = expert_pointers(base, lay, L.E);
  auto put = [&](auto* table, const auto& v, const char* what) {
    HLWQ_CUDA_CHECK(cudaMemcpy(table, v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice),
                    "MoE {} table of {} routed experts", what, v.size());
  };
  put(L.gu.q.get(), t.gq, "gate_up");
  put(L.gu.scale.get(), t.gs, "gate_up scale");
  put(L.dn.q.get(), t.dq, "down");
  put(L.dn.scale.get(), t.ds, "down scale");
}

void check_unplaced(const MoeLayerDev& L) {
  HLWQ_CHECK(!L.cache && L.routed.size() == 0, "MoE: the routed experts of a layer placed twice (a cache or resident)");
}
}  // namespace

void attach_expert_cache(MoeLayerDev& L, const uint8_t* host_experts, const ExpertLayout& layout, int64_t n_slots) {
  check_unplaced(L);
  point_routed(L, host_experts, layout);  // every expert starts in host memory (the cache fills on use)
  L.cache = std::make_unique<ExpertCacheDev>(make_expert_cache(L.E, std::min(n_slots, L.E), layout, host_experts));
}

void make_routed_resident(MoeLayerDev& L, const uint8_t* host_experts, const ExpertLayout& layout) {
  check_unplaced(L);
  const size_t bytes = size_t(L.E) * size_t(layout.bytes);
  L.routed = DeviceBuffer<uint8_t>(bytes, "MoE routed experts");
  HLWQ_CUDA_CHECK(cudaMemcpy(L.routed.get(), host_experts, bytes, cudaMemcpyDefault),
                  "copying {} routed experts ({:.1f} MiB) to the device", L.E, double(bytes) / double(1 << 20));
  point_routed(L, L.routed.get(), layout);
}

MoeWorkspace make_moe_workspace(const MoeLayerDev& L, int64_t max_T) {
  MoeWorkspace ws;
  ws.max_T = max_T;
  ws.max_tiles = moe_max_tiles(max_T, L.k, L.E, L.n_shared);
  const int64_t slots = ws.max_tiles * 8, A = L.k + L.n_shared;
  ws.x_tok = DeviceBuffer<uint32_t>(size_t(xfrag_words(max_T, L.router.in_pad)), "MoE xn");
  if (!reads_tokens(L))  // only rotated rows are gathered by slot (expert_mlp)
    ws.x_slot = DeviceBuffer<uint32_t>(size_t(xfrag_words(slots, L.gu.in_pad)), "MoE xn by slot");
  else
    HLWQ_CHECK(L.router.in_pad == L.gu.in_pad, "MoE: the router's input pads to {} columns, the experts' to {}",
               L.router.in_pad, L.gu.in_pad);
  ws.h = DeviceBuffer<uint32_t>(size_t(xfrag_words(slots, L.dn.in_pad)), "MoE h");
  // columns of h past I are never written by the gate_up kernel and must read as zero
  HLWQ_CUDA_CHECK(cudaMemset(ws.h.get(), 0, ws.h.bytes()), "clearing MoE h");
  ws.logits = DeviceBuffer<float>(size_t(max_T * L.router.out), "MoE router logits");
  ws.y = DeviceBuffer<float>(size_t(slots * L.H), "MoE expert outputs");
  ws.slot_w = DeviceBuffer<float>(size_t(slots), "MoE slot weights");
  ws.topk_w = DeviceBuffer<float>(size_t(max_T * L.k), "MoE top-k weights");
  ws.topk_ids = DeviceBuffer<int>(size_t(max_T * L.k), "MoE top-k ids");
  ws.slot_tok = DeviceBuffer<int>(size_t(slots), "MoE slot tokens");
  ws.tile_mat = DeviceBuffer<int>(size_t(ws.max_tiles), "MoE tile matrices");
  ws.tok_slot = DeviceBuffer<int>(size_t(max_T * A), "MoE token slots");
  ws.cpu_mark = DeviceBuffer<uint8_t>(size_t(L.E), "MoE experts on the CPU");
  if (L.dn.format == PackedFormat::hlwq) {
    ws.h32 = DeviceBuffer<float>(size_t(slots * L.I), "MoE h (fp32, HLWQ experts)");
  }
  ws.fused = plan_fused_mlp(L.gu, L.dn);
  ws.router_one = plan_router_one(L.router, L.E, L.k, L.n_shared);
  return ws;
}

namespace {

ExpertTables tables_of(const MoeLayerDev& L) {
  return ExpertTables{L.gu.q.get(), L.gu.scale.get(), L.dn.q.get(), L.dn.scale.get()};
}

// The experts' SwiGLU MLPs for the tiles [t0, t0 + n) of a step's slot plan of `tiles` tiles: xn → h → y (rows
// 8·t0 on). Every launch keeps the whole plan's shape (launch_tiles), so a range sums as the whole would. INT4
// experts at a few tokens run both in one launch (moe_fused.cuh).
// HLWQ experts read rotated activations (hlwq_gemm.cuh): h in fp32 [slots, I], then rotated and rounded once.
void expert_mlp(const MoeLayerDev& L, MoeWorkspace& ws, int64_t t0, int64_t n, int64_t tiles, cudaStream_t st,
                const CopyThrough& ct = {}) {
  const int64_t s0 = t0 * 8;
  // plain gate_up matrices read the tokens' fragments (x_tok) through the slot plan; HLWQ ones the rotated rows
  // gathered by slot (x_slot)
  const bool by_token = reads_tokens(L);
  const uint32_t* x = by_token ? ws.x_tok.get() : ws.x_slot.get() + t0 * xfrag_tile_words(L.gu.in_pad);
  const int* x_rows = by_token ? ws.slot_tok.get() + s0 : nullptr;
  uint32_t* h = ws.h.get() + t0 * xfrag_tile_words(L.dn.in_pad);
  const int* tm = ws.tile_mat.get() + t0;
  // the choice depends on the whole plan's size only, so a step with a cache runs what the all-resident one runs
  if (by_token && ws.fused.runs(tiles)) {
    fused_mlp(ws.fused, L.gu, L.dn, x, x_rows, tm, n, n * 8, h, ws.y.get() + s0 * L.H, L.H, ws.slot_w.get() + s0, st,
              ct);
    return;
  }
  HLWQ_CHECK(!ct.copies, "expert_mlp: copy-through needs the fused kernel");
  if (L.dn.format == PackedFormat::hlwq) {
    float* h32 = ws.h32.get() + s0 * L.I;
    gemm_grouped(L.gu, GroupedEpilogue::swiglu_f32, x, tm, n, nullptr, 0, h32, L.I, nullptr, st, tiles, x_rows);
    hlwq_pack_slots(h32, L.I, n * 8, L.I, tm, L.dn.in_pad, h, st);
  } else {
    gemm_grouped(L.gu, GroupedEpilogue::swiglu, x, tm, n, h, L.dn.in_pad, nullptr, 0, nullptr, st, tiles, x_rows);
  }
  gemm_grouped(L.dn, GroupedEpilogue::weighted, h, tm, n, nullptr, 0, ws.y.get() + s0 * L.H, L.H,
               ws.slot_w.get() + s0, st, tiles);
}

}  // namespace

void moe_forward(const MoeLayerDev& L, MoeWorkspace& ws, const float* xn, int64_t T, float* out, bool accumulate,
                 cudaStream_t st, const MoeStepHooks& hooks, const MoeCpuPart* cpu, const MoeNorms& norms) {
  HLWQ_CHECK(T <= ws.max_T, "moe_forward: {} tokens, workspace for {}", T, ws.max_T);
  if (T == 0) return;
  const int64_t tiles = moe_max_tiles(T, L.k, L.E, L.n_shared), A = L.k + L.n_shared;
  if (!norms.x_packed) {
    if (hooks.prefetch) hooks.prefetch->release_input(st);  // an earlier layer's prefetch may still read x_tok
    pack_activations(xn, L.H, T, L.H, nullptr, T, L.router.in_pad, ws.x_tok.get(), st);
  }
  // a prefetch into this layer is joined right after the routing, which stamps when it got there (the copy time
  // the join then waits for is counted as exposed: expert_cache_dev.cuh)
  const bool joins = L.cache && hooks.prefetch && hooks.prefetch->pending(hooks.layer);
  MoePlan plan{ws.topk_ids.get(), ws.topk_w.get(), ws.slot_tok.get(), ws.slot_w.get(), ws.tile_mat.get(),
               ws.tok_slot.get(), hooks.route_ids, joins ? L.cache->timing.get() + kTimeRouteDone : nullptr};
  // the plan marks misses for the CPU only where the mode applies to a step of this size (cpu_split.h)
  const bool marks = L.cache && cpu && cpu->cpu && !cpu->all_routed && cpu->mode != CpuExperts::off &&
                     (cpu->mode == CpuExperts::all || T <= kCpuSplitMaxTokens);
  const bool to_cpu = cpu && cpu->cpu && (cpu->all_routed || marks);
  // a large batch streams the layer's missing experts (moe_stream.cuh) instead of the cache's per-step plan
  const bool stream = L.cache && hooks.stream && hooks.stream->wants(T) && !to_cpu;
  // the fused kernel copies the step's admissions itself (moe_fused.cuh) where it runs the whole plan and has a
  // tile for every admitted expert: no CPU split, at most 8 tokens (one tile an expert)
  const bool copy_through =
      L.cache && !stream && !to_cpu && reads_tokens(L) && ws.fused.runs(tiles) && T <= 8;
  const bool one_launch = T == 1 && ws.router_one.available();  // every one-token step, cache or not: same bits
  const bool planned = L.cache && !stream;
  const ExpertCachePlan cache_plan =
      planned ? expert_cache_plan_of(*L.cache, ws.topk_ids.get(), T, L.k, tables_of(L),
                                     marks ? CpuSplitArgs{cpu->mode, cpu->costs, ws.cpu_mark.get()} : CpuSplitArgs{},
                                     joins)
              : ExpertCachePlan{};
  // the routing's own launch plans the cache too, unless a prefetch join must come between them
  const bool plan_in_router = one_launch && planned && !joins;
  if (one_launch) {
    router_one(ws.router_one, L.router, ws.x_tok.get(), ws.logits.get(), L.E, L.k, L.n_shared, plan, tiles, st, 0,
               plan_in_router ? &cache_plan : nullptr);
  } else {
    gemm(L.router, ws.x_tok.get(), T, ws.logits.get(), L.router.out, st);
    moe_route(ws.logits.get(), L.router.out, T, L.E, L.k, L.n_shared, plan, tiles, st);
  }
  if (L.cache) {
    if (hooks.prefetch) hooks.prefetch->join(hooks.layer, st);  // before anything touches this layer's slots
    if (planned && !plan_in_router) expert_cache_plan(cache_plan, st);
    if (planned && !copy_through) expert_cache_admit(*L.cache, T, L.k, st);  // else the expert kernel copies
  }
  if (to_cpu)
    cpu->cpu->fork(cpu->layer, xn, T, ws.tile_mat.get(), ws.slot_tok.get(), ws.slot_w.get(), tiles, L.E,
                   cpu->all_routed ? nullptr : ws.cpu_mark.get(), st);
  if (hooks.prefetch && hooks.next && hooks.next->cache)  // overlaps this layer's experts (moe_prefetch.cuh)
    hooks.prefetch->issue(hooks.layer + 1, *hooks.next, ws.x_tok.get(), T, st);
  // HLWQ experts read rotated activations (hlwq_gemm.cuh): xn rotated while gathered by slot; the others read
  // x_tok through the plan (expert_mlp)
  HLWQ_CHECK(reads_tokens(L) || ws.x_slot.size() > 0, "moe_forward: HLWQ experts with a workspace made for plain ones");
  if (!reads_tokens(L))
    hlwq_pack_activations(xn, L.H, T, L.H, ws.slot_tok.get(), tiles * 8, L.gu.in_pad, ws.x_slot.get(), st);
  if (stream)
    hooks.stream->run(*L.cache, tables_of(L), ws.tile_mat.get(), tiles, st,
                      [&](int64_t t0, int64_t n) { expert_mlp(L, ws, t0, n, tiles, st); });
  else
    expert_mlp(L, ws, 0, tiles, tiles, st, copy_through ? expert_cache_copy_through(*L.cache) : CopyThrough{});
  if (to_cpu) cpu->cpu->join(ws.y.get(), T, st);
  if (norms.h) {
    NormFusion f = norms.after;
    f.res_slots = ws.tok_slot.get();
    f.res_A = A;
    rmsnorm_zero_centred(norms.h, ws.y.get(), norms.w, T, L.H, norms.eps, norms.y, st, f);
  } else {
    moe_combine(ws.y.get(), ws.tok_slot.get(), T, A, L.H, accumulate, out, st);
  }
}

}  // namespace hlwq::cuda
