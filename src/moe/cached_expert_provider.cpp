// CachedExpertProvider (see cached_expert_provider.h).
#include "moe/cached_expert_provider.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"

namespace hlwq {

HostExpertArena::HostExpertArena(int n_layers, int n_slots, int n_stream_buffers, int64_t bytes_per_expert)
    : n_slots_(n_slots), n_stream_(n_stream_buffers), bytes_(bytes_per_expert),
      mem_(size_t(n_layers) * size_t(n_slots + n_stream_buffers) * size_t(bytes_per_expert)) {}

uint8_t* HostExpertArena::slot(int layer, int s) {
  return mem_.data() + (size_t(layer) * size_t(n_slots_ + n_stream_) + size_t(s)) * size_t(bytes_);
}
uint8_t* HostExpertArena::stream_buffer(int layer, int b) { return slot(layer, n_slots_ + b); }
void HostExpertArena::copy(uint8_t* dst, const uint8_t* src, size_t n) { std::memcpy(dst, src, n); }

namespace {

// The tensors of an expert in slot order: gate, up, down; each its weight (dense) or packed words then scales.
template <class E, class F>
void for_each_part(E& e, F&& f) {
  for (auto* lw : {&e.gate_proj, &e.up_proj, &e.down_proj}) {
    if (lw->format == LinearFormat::dense) {
      f(lw->weight);
    } else {
      f(lw->packed);
      f(lw->scale);
    }
  }
}

bool same_layout(const ExpertWeights& a, const ExpertWeights& b) {
  std::vector<const TensorView*> pa, pb;
  for_each_part(a, [&](const TensorView& t) { pa.push_back(&t); });
  for_each_part(b, [&](const TensorView& t) { pb.push_back(&t); });
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (pa[i]->dtype != pb[i]->dtype || pa[i]->shape != pb[i]->shape) return false;
  return true;
}

}  // namespace

int64_t CachedExpertProvider::expert_bytes(const ModelWeights& w) {
  HLWQ_CHECK(!w.layers.empty() && !w.layers[0].moe.experts.empty(), "the model has no routed experts to cache");
  int64_t n = 0;
  for_each_part(w.layers[0].moe.experts[0], [&](const TensorView& t) { n += int64_t(t.nbytes()); });
  return n;
}

CachedExpertProvider::CachedExpertProvider(const ModelWeights& w, const ExpertCacheConfig& cfg, ExpertArena& arena,
                                           bool prefetch)
    : w_(w), cache_(cfg), arena_(arena), prefetch_(prefetch) {
  HLWQ_CHECK(cfg.n_layers == int(w.layers.size()), "expert cache for {} layers, the model has {}", cfg.n_layers,
             w.layers.size());
  const ExpertWeights& first = w.layers[0].moe.experts.at(0);
  for (const LayerWeights& lw : w.layers) {
    HLWQ_CHECK(int(lw.moe.experts.size()) == cfg.n_experts, "expert cache for {} experts per layer, a layer has {}",
               cfg.n_experts, lw.moe.experts.size());
    for (const ExpertWeights& e : lw.moe.experts)
      HLWQ_CHECK(same_layout(e, first), "{}: expert layout differs from {} (every expert of a cached model must "
                 "share one format and shape)", e.gate_proj.name, first.gate_proj.name);
  }
  // the template: expert 0's metadata with each view's data pointer as its offset in a slot
  layout_ = first;
  int64_t off = 0;
  for_each_part(layout_, [&](TensorView& t) {
    t.data = reinterpret_cast<const void*>(off);
    off += int64_t(t.nbytes());
  });
  HLWQ_CHECK(off == cfg.bytes_per_expert, "expert cache configured for {} bytes per expert, the layout has {}",
             cfg.bytes_per_expert, off);
  slot_views_.resize(size_t(cfg.n_layers));
  stream_views_.resize(size_t(cfg.n_layers));
  for (int l = 0; l < cfg.n_layers; ++l) {
    for (int s = 0; s < cfg.n_slots; ++s) slot_views_[size_t(l)].push_back(view_at(arena.slot(l, s)));
    for (int b = 0; b < cfg.n_stream_buffers; ++b) stream_views_[size_t(l)].push_back(view_at(arena.stream_buffer(l, b)));
  }
}

ExpertWeights CachedExpertProvider::view_at(const uint8_t* base) const {
  ExpertWeights e = layout_;
  for_each_part(e, [&](TensorView& t) { t.data = base + reinterpret_cast<uintptr_t>(t.data); });
  return e;
}

void CachedExpertProvider::copy_expert(int layer, int32_t expert, uint8_t* dst) {
  const ExpertWeights& src = w_.layers[size_t(layer)].moe.experts[size_t(expert)];
  for_each_part(src, [&](const TensorView& t) {
    arena_.copy(dst, static_cast<const uint8_t*>(t.data), t.nbytes());
    dst += t.nbytes();
  });
}

void CachedExpertProvider::issue(int layer, const std::vector<ExpertCopy>& copies) {
  if (copies.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  for (const ExpertCopy& c : copies)
    copy_expert(layer, c.expert, c.dst == ExpertCopyDst::kSlot ? arena_.slot(layer, c.index)
                                                               : arena_.stream_buffer(layer, c.index));
  copy_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

void CachedExpertProvider::acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) {
  const StepPlan plan = cache_.begin_step(layer, ids);
  // A backend computes every expert of a layer at once: all of them must be placed in one wave.
  HLWQ_CHECK(plan.n_waves <= 1, "layer {} needs {} experts beyond its {} slots, more than its {} staging buffers",
             layer, ids.size(), cache_.config().n_slots, cache_.config().n_stream_buffers);
  issue(layer, plan.copies);
  arena_.fence();
  for (size_t i = 0; i < plan.placements.size(); ++i) {
    const ExpertPlacement& p = plan.placements[i];
    where[i] = p.where == ExpertWhere::kStream ? &stream_views_[size_t(layer)][size_t(p.index)]
                                               : &slot_views_[size_t(layer)][size_t(p.index)];
  }
}

void CachedExpertProvider::release(int layer) { cache_.end_step(layer); }

void CachedExpertProvider::hint(int layer, std::span<const int32_t> ids) {
  if (!prefetch_) return;
  distinct_.assign(ids.begin(), ids.end());
  std::sort(distinct_.begin(), distinct_.end());
  distinct_.erase(std::unique(distinct_.begin(), distinct_.end()), distinct_.end());
  issue(layer, cache_.prefetch(layer, distinct_));
}

ExpertProviderStats CachedExpertProvider::stats() const {
  ExpertCacheStats c = cache_.stats();
  c.copy_ns = c.copy_exposed_ns = copy_ns_;  // the host arena copies synchronously, on the forward's own thread
  return ExpertProviderStats{c, c.prefetch_hits, c.prefetch_wasted};
}

}  // namespace hlwq
