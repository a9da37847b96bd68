// MoE block orchestration (see moe.cuh).
#include "backend/cuda/moe.cuh"

#include <cuda_runtime.h>

namespace hlwq::cuda {

int64_t MoeLayerDev::expert_bytes() const { return gate_up.empty() ? 0 : gate_up[0].bytes() + down[0].bytes(); }

MoeLayerDev upload_moe(const MoeWeights& w, int64_t n_active) {
  MoeLayerDev L;
  L.H = w.router.in;
  L.E = w.router.out;
  L.k = n_active;
  HLWQ_CHECK(!w.experts.empty() && int64_t(w.experts.size()) == L.E, "MoE {}: {} experts, router has {} rows",
             w.router.name, w.experts.size(), L.E);
  L.I = w.experts[0].gate_proj.out;
  L.has_shared = w.has_shared;
  if (L.has_shared)
    HLWQ_CHECK(w.shared.gate_proj.out == L.I, "MoE {}: shared expert width {} differs from the experts' {} (the fused "
               "CUDA MoE kernel needs them equal)", w.router.name, w.shared.gate_proj.out, L.I);
  std::vector<RowRange> rr{{&w.router, 0, L.E}};
  if (L.has_shared) rr.push_back({&w.shared_gate, 0, 1});
  L.router = upload_packed(pack_rows(PackedFormat::bf16, rr, w.router.name.c_str()), w.router.name.c_str());
  const PackedFormat f =
      w.experts[0].gate_proj.format == LinearFormat::u4b8_g128 ? PackedFormat::int4 : PackedFormat::bf16;
  auto add = [&](const ExpertWeights& e) {
    L.gate_up.push_back(upload_packed(pack_gate_up(f, e.gate_proj, e.up_proj), e.gate_proj.name.c_str()));
    L.down.push_back(upload_packed(pack_linear(f, e.down_proj), e.down_proj.name.c_str()));
  };
  for (const auto& e : w.experts) add(e);
  if (L.has_shared) add(w.shared);
  std::vector<const PackedLinear*> gu, dn;
  for (size_t i = 0; i < L.gate_up.size(); ++i) gu.push_back(&L.gate_up[i]), dn.push_back(&L.down[i]);
  L.gu = make_grouped(gu, "MoE gate_up");
  L.dn = make_grouped(dn, "MoE down");
  return L;
}

MoeWorkspace make_moe_workspace(const MoeLayerDev& L, int64_t max_T) {
  MoeWorkspace ws;
  ws.max_T = max_T;
  ws.max_tiles = moe_max_tiles(max_T, L.k, L.E, L.has_shared);
  const int64_t slots = ws.max_tiles * 8, A = L.k + (L.has_shared ? 1 : 0);
  ws.x_tok = DeviceBuffer<uint32_t>(size_t(xfrag_words(max_T, L.router.in_pad)), "MoE xn");
  ws.x_slot = DeviceBuffer<uint32_t>(size_t(xfrag_words(slots, L.gu.in_pad)), "MoE xn by slot");
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
  return ws;
}

void moe_forward(const MoeLayerDev& L, MoeWorkspace& ws, const float* xn, int64_t T, float* out, bool accumulate,
                 cudaStream_t st) {
  HLWQ_CHECK(T <= ws.max_T, "moe_forward: {} tokens, workspace for {}", T, ws.max_T);
  if (T == 0) return;
  const int64_t tiles = moe_max_tiles(T, L.k, L.E, L.has_shared), A = L.k + (L.has_shared ? 1 : 0);
  pack_activations(xn, L.H, T, L.H, nullptr, T, L.router.in_pad, ws.x_tok.get(), st);
  gemm(L.router, ws.x_tok.get(), T, ws.logits.get(), L.router.out, st);
  MoePlan plan{ws.topk_ids.get(), ws.topk_w.get(), ws.slot_tok.get(), ws.slot_w.get(), ws.tile_mat.get(),
               ws.tok_slot.get()};
  moe_route(ws.logits.get(), L.router.out, T, L.E, L.k, L.has_shared, plan, tiles, st);
  pack_activations(xn, L.H, T, L.H, ws.slot_tok.get(), tiles * 8, L.gu.in_pad, ws.x_slot.get(), st);
  gemm_grouped(L.gu, GroupedEpilogue::swiglu, ws.x_slot.get(), ws.tile_mat.get(), tiles, ws.h.get(), L.dn.in_pad,
               nullptr, 0, nullptr, st);
  gemm_grouped(L.dn, GroupedEpilogue::weighted, ws.h.get(), ws.tile_mat.get(), tiles, nullptr, 0, ws.y.get(), L.H,
               ws.slot_w.get(), st);
  moe_combine(ws.y.get(), ws.tok_slot.get(), T, A, L.H, accumulate, out, st);
}

}  // namespace hlwq::cuda
