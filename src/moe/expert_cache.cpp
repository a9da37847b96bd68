// ExpertCache implementation (see expert_cache.h for the invariants). Cost per step: O(n_experts) to validate
// the request and O(misses · n_slots) for victim scans — a few thousand operations per layer at decode, far
// below the ~30 µs one expert copy takes, so plain scans beat keeping a priority queue consistent with pins.
#include "moe/expert_cache.h"

#include <algorithm>

#include "core/error.h"

namespace hlwq {

namespace {
// Every counter of ExpertCacheStats, for += and −.
using Counter = int64_t ExpertCacheStats::*;
constexpr Counter kCounters[] = {
    &ExpertCacheStats::hits,          &ExpertCacheStats::misses,          &ExpertCacheStats::streamed,
    &ExpertCacheStats::prefetched,    &ExpertCacheStats::prefetch_hits,   &ExpertCacheStats::prefetch_wasted,
    &ExpertCacheStats::staged,        &ExpertCacheStats::bytes_copied,    &ExpertCacheStats::copy_ns,
    &ExpertCacheStats::copy_exposed_ns, &ExpertCacheStats::steps,         &ExpertCacheStats::steps_prefetching,
    &ExpertCacheStats::steps_not_prefetching, &ExpertCacheStats::cpu_only, &ExpertCacheStats::cpu_experts,
    &ExpertCacheStats::cpu_static,    &ExpertCacheStats::cpu_bytes,       &ExpertCacheStats::cpu_ns};
static_assert(sizeof(kCounters) / sizeof(kCounters[0]) * sizeof(int64_t) == sizeof(ExpertCacheStats),
              "a member of ExpertCacheStats is missing from kCounters");
}  // namespace

ExpertCacheStats& ExpertCacheStats::operator+=(const ExpertCacheStats& d) {
  for (const Counter c : kCounters) this->*c += d.*c;
  return *this;
}

ExpertCacheStats ExpertCacheStats::operator-(const ExpertCacheStats& a) const {
  ExpertCacheStats d = *this;
  for (const Counter c : kCounters) d.*c -= a.*c;
  return d;
}

const char* expert_eviction_policy_name(ExpertEvictionPolicy p) {
  switch (p) {
    case ExpertEvictionPolicy::kLru: return "lru";
    case ExpertEvictionPolicy::kLfru: return "lfru";
  }
  return "?";
}

ExpertCache::ExpertCache(const ExpertCacheConfig& cfg) : cfg_(cfg) {
  HLWQ_CHECK(cfg.n_layers >= 1, "expert cache: n_layers must be >= 1, got {}", cfg.n_layers);
  HLWQ_CHECK(cfg.n_experts >= 1, "expert cache: n_experts must be >= 1, got {}", cfg.n_experts);
  HLWQ_CHECK(cfg.n_slots >= 1, "expert cache: n_slots must be >= 1, got {}", cfg.n_slots);
  HLWQ_CHECK(cfg.n_stream_buffers >= 1, "expert cache: n_stream_buffers must be >= 1, got {}",
             cfg.n_stream_buffers);
  HLWQ_CHECK(cfg.bytes_per_expert >= 0, "expert cache: bytes_per_expert must be >= 0, got {}",
             cfg.bytes_per_expert);
  HLWQ_CHECK(cfg.lfru_half_life_steps >= 1, "expert cache: lfru_half_life_steps must be >= 1, got {}",
             cfg.lfru_half_life_steps);
  layers_.resize(size_t(cfg.n_layers));
  for (Layer& L : layers_) {
    L.slot_expert.assign(size_t(cfg.n_slots), -1);
    L.expert_slot.assign(size_t(cfg.n_experts), -1);
    L.slot_used.assign(size_t(cfg.n_slots), 0);
    L.slot_pinned.assign(size_t(cfg.n_slots), 0);
    L.slot_prefetched.assign(size_t(cfg.n_slots), 0);
    L.uses.assign(size_t(cfg.n_experts), 0);
  }
}

ExpertCache::Layer& ExpertCache::layer_at(int layer) {
  HLWQ_CHECK(layer >= 0 && layer < cfg_.n_layers, "expert cache: layer {} out of range [0, {})", layer,
             cfg_.n_layers);
  return layers_[size_t(layer)];
}

const ExpertCache::Layer& ExpertCache::layer_at(int layer) const {
  HLWQ_CHECK(layer >= 0 && layer < cfg_.n_layers, "expert cache: layer {} out of range [0, {})", layer,
             cfg_.n_layers);
  return layers_[size_t(layer)];
}

int ExpertCache::pick_victim(const Layer& L) const {
  int best = -1;
  for (int s = 0; s < cfg_.n_slots; ++s) {
    if (L.slot_pinned[size_t(s)]) continue;
    if (L.slot_expert[size_t(s)] < 0) return s;  // an empty slot costs no eviction
    if (best < 0) {
      best = s;
      continue;
    }
    const uint64_t used_s = L.slot_used[size_t(s)], used_b = L.slot_used[size_t(best)];
    if (cfg_.policy == ExpertEvictionPolicy::kLfru) {
      const uint32_t u_s = L.uses[size_t(L.slot_expert[size_t(s)])];
      const uint32_t u_b = L.uses[size_t(L.slot_expert[size_t(best)])];
      if (u_s != u_b) {
        if (u_s < u_b) best = s;
        continue;
      }
    }
    if (used_s < used_b) best = s;
  }
  return best;
}

bool ExpertCache::admits(const Layer& L, int slot, int32_t expert) const {
  if (cfg_.policy != ExpertEvictionPolicy::kLfru) return true;
  const int32_t occupant = L.slot_expert[size_t(slot)];
  return occupant < 0 || L.uses[size_t(expert)] >= L.uses[size_t(occupant)];
}

void ExpertCache::place(Layer& L, int slot, int32_t expert) {
  const int32_t old = L.slot_expert[size_t(slot)];
  if (old >= 0) L.expert_slot[size_t(old)] = -1;
  L.slot_expert[size_t(slot)] = expert;
  L.expert_slot[size_t(expert)] = slot;
}

StepPlan ExpertCache::begin_step(int layer, std::span<const int32_t> experts) {
  Layer& L = layer_at(layer);
  HLWQ_CHECK(!L.in_step, "expert cache: begin_step({}) while the layer's previous step is still open", layer);
  // Validate everything before mutating anything, so a throw leaves the cache as it was.
  std::vector<uint8_t> seen(size_t(cfg_.n_experts), 0);
  for (int32_t e : experts) {
    HLWQ_CHECK(e >= 0 && e < cfg_.n_experts, "expert cache: layer {} expert id {} out of range [0, {})", layer, e,
               cfg_.n_experts);
    HLWQ_CHECK(!seen[size_t(e)], "expert cache: layer {} expert {} requested twice in one step", layer, e);
    seen[size_t(e)] = 1;
  }
  L.in_step = true;
  ++stats_.steps;
  const uint64_t now = ++tick_;
  if (++L.steps % cfg_.lfru_half_life_steps == 0)
    for (uint32_t& u : L.uses) u >>= 1;
  for (int32_t e : experts) ++L.uses[size_t(e)];

  StepPlan plan;
  plan.layer = layer;
  plan.placements.resize(experts.size());
  // Hits first: pinning every resident expert before any miss picks a victim is what keeps a miss from
  // evicting an expert this very step needs.
  std::vector<size_t> miss_order;
  for (size_t i = 0; i < experts.size(); ++i) {
    const int32_t e = experts[i];
    const int s = L.expert_slot[size_t(e)];
    if (s >= 0) {
      plan.placements[i] = {e, ExpertWhere::kSlotHit, s, 0};
      L.slot_pinned[size_t(s)] = 1;
      L.slot_used[size_t(s)] = now;
      ++stats_.hits;
      if (L.slot_prefetched[size_t(s)]) ++stats_.prefetch_hits, L.slot_prefetched[size_t(s)] = 0;
    } else {
      miss_order.push_back(i);
    }
  }
  // kLfru offers the scarce free slots to the most used misses first; kLru keeps request order (all misses are
  // equally recent).
  if (cfg_.policy == ExpertEvictionPolicy::kLfru)
    std::stable_sort(miss_order.begin(), miss_order.end(),
                     [&](size_t a, size_t b) { return L.uses[size_t(experts[a])] > L.uses[size_t(experts[b])]; });
  std::vector<size_t> streamed;
  for (size_t i : miss_order) {
    const int32_t e = experts[i];
    const int s = pick_victim(L);
    if (s < 0 || !admits(L, s, e)) {
      streamed.push_back(i);
      continue;
    }
    place(L, s, e);
    L.slot_pinned[size_t(s)] = 1;
    L.slot_used[size_t(s)] = now;
    if (L.slot_prefetched[size_t(s)]) ++stats_.prefetch_wasted, L.slot_prefetched[size_t(s)] = 0;
    plan.placements[i] = {e, ExpertWhere::kSlotLoad, s, 0};
    plan.copies.push_back({e, ExpertCopyDst::kSlot, s, 0});
    ++stats_.misses;
  }
  // Streamed experts are numbered in request order, so wave w holds streamed experts [w·K, (w+1)·K).
  std::sort(streamed.begin(), streamed.end());
  const int k = cfg_.n_stream_buffers;
  for (size_t j = 0; j < streamed.size(); ++j) {
    const size_t i = streamed[j];
    const int32_t buf = int32_t(j % size_t(k)), wave = int32_t(j / size_t(k));
    plan.placements[i] = {experts[i], ExpertWhere::kStream, buf, wave};
    plan.copies.push_back({experts[i], ExpertCopyDst::kStreamBuffer, buf, wave});
  }
  plan.n_waves = int((streamed.size() + size_t(k) - 1) / size_t(k));
  stats_.streamed += int64_t(streamed.size());
  stats_.bytes_copied += int64_t(plan.copies.size()) * cfg_.bytes_per_expert;
  return plan;
}

void ExpertCache::end_step(int layer) {
  Layer& L = layer_at(layer);
  HLWQ_CHECK(L.in_step, "expert cache: end_step({}) without an open step", layer);
  std::fill(L.slot_pinned.begin(), L.slot_pinned.end(), uint8_t(0));
  L.in_step = false;
}

std::vector<int32_t> ExpertCache::suggest_prefetch(int layer, int max) const {
  const Layer& L = layer_at(layer);
  std::vector<int32_t> cand;
  for (int32_t e = 0; e < cfg_.n_experts; ++e)
    if (L.expert_slot[size_t(e)] < 0 && L.uses[size_t(e)] > 0) cand.push_back(e);
  const size_t n = std::min(cand.size(), size_t(std::max(max, 0)));
  std::partial_sort(cand.begin(), cand.begin() + ptrdiff_t(n), cand.end(), [&](int32_t a, int32_t b) {
    return L.uses[size_t(a)] != L.uses[size_t(b)] ? L.uses[size_t(a)] > L.uses[size_t(b)] : a < b;
  });
  cand.resize(n);
  return cand;
}

std::vector<ExpertCopy> ExpertCache::prefetch(int layer, std::span<const int32_t> experts) {
  Layer& L = layer_at(layer);
  for (int32_t e : experts)
    HLWQ_CHECK(e >= 0 && e < cfg_.n_experts, "expert cache: prefetch layer {} expert id {} out of range [0, {})",
               layer, e, cfg_.n_experts);
  const uint64_t now = ++tick_;
  std::vector<ExpertCopy> copies;
  // slots reserved by this call, pinned until it returns: the resident predicted experts (placing one predicted
  // expert must not evict another) and the slots it fills (so it cannot undo itself)
  std::vector<int> reserved;
  for (int32_t e : experts) {
    const int s = L.expert_slot[size_t(e)];
    if (s >= 0 && !L.slot_pinned[size_t(s)]) L.slot_pinned[size_t(s)] = 1, reserved.push_back(s);
  }
  for (int32_t e : experts) {
    if (L.expert_slot[size_t(e)] >= 0) continue;
    const int s = pick_victim(L);
    if (s < 0) break;
    if (!admits(L, s, e)) continue;
    place(L, s, e);
    L.slot_used[size_t(s)] = now;
    L.slot_pinned[size_t(s)] = 1;
    if (L.slot_prefetched[size_t(s)]) ++stats_.prefetch_wasted;  // an earlier prefetch there was never used
    L.slot_prefetched[size_t(s)] = 1;
    reserved.push_back(s);
    copies.push_back({e, ExpertCopyDst::kSlot, s, 0});
  }
  // Only this call's reservations are released: pins of an open step on this layer must survive.
  for (int s : reserved) L.slot_pinned[size_t(s)] = 0;
  stats_.prefetched += int64_t(copies.size());
  stats_.bytes_copied += int64_t(copies.size()) * cfg_.bytes_per_expert;
  return copies;
}

int32_t ExpertCache::slot_expert(int layer, int slot) const {
  const Layer& L = layer_at(layer);
  HLWQ_CHECK(slot >= 0 && slot < cfg_.n_slots, "expert cache: slot {} out of range [0, {})", slot, cfg_.n_slots);
  return L.slot_expert[size_t(slot)];
}

int32_t ExpertCache::expert_slot(int layer, int32_t expert) const {
  const Layer& L = layer_at(layer);
  HLWQ_CHECK(expert >= 0 && expert < cfg_.n_experts, "expert cache: expert {} out of range [0, {})", expert,
             cfg_.n_experts);
  return L.expert_slot[size_t(expert)];
}

bool ExpertCache::slot_pinned(int layer, int slot) const {
  const Layer& L = layer_at(layer);
  HLWQ_CHECK(slot >= 0 && slot < cfg_.n_slots, "expert cache: slot {} out of range [0, {})", slot, cfg_.n_slots);
  return L.slot_pinned[size_t(slot)] != 0;
}

}  // namespace hlwq
