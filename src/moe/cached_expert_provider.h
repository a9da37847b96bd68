// CachedExpertProvider: the expert provider of an expert cache (SPEC §7). Per MoE layer, n_slots slots each hold
// one routed expert's bytes, plus staging buffers for the experts a step needs beyond the slots (N < top-k); the
// ExpertCache policy (expert_cache.h) decides placements, pins every slot a step uses from acquire to release, and
// returns the copies to make. The bytes move through an ExpertArena: host memory and memcpy on the CPU (which
// measures the policy and proves the plumbing bit-exact in CI), device memory and an asynchronous copy stream on a
// GPU. Every expert keeps its stored format: a slot holds the three matrices back to back (INT4: packed words then
// scales; dense: the weight), so backends compute on a slot exactly as on the checkpoint.
//
// Hints (the next layer's router applied to the current hidden state) become prefetches into unpinned slots;
// counters say how many of them were used before being evicted. Not thread-safe: one forward at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/weights.h"
#include "moe/expert_cache.h"
#include "moe/expert_provider.h"

namespace hlwq {

// Where slots and staging buffers live, and how expert bytes get there.
class ExpertArena {
 public:
  virtual ~ExpertArena() = default;
  virtual uint8_t* slot(int layer, int slot) = 0;           // bytes_per_expert bytes
  virtual uint8_t* stream_buffer(int layer, int buf) = 0;   // bytes_per_expert bytes
  virtual void copy(uint8_t* dst, const uint8_t* src, size_t n) = 0;  // may return before the bytes land
  virtual void fence() = 0;  // every copy issued so far has landed
};

// Host memory, synchronous memcpy.
class HostExpertArena final : public ExpertArena {
 public:
  HostExpertArena(int n_layers, int n_slots, int n_stream_buffers, int64_t bytes_per_expert);
  uint8_t* slot(int layer, int slot) override;
  uint8_t* stream_buffer(int layer, int buf) override;
  void copy(uint8_t* dst, const uint8_t* src, size_t n) override;
  void fence() override {}

 private:
  int n_slots_, n_stream_;
  int64_t bytes_;
  std::vector<uint8_t> mem_;  // [n_layers, n_slots + n_stream, bytes]
};

struct ExpertProviderStats {
  ExpertCacheStats cache;       // hits, misses, streamed, prefetched, bytes copied
  int64_t prefetch_hits = 0;    // = cache.prefetch_hits (kept for the callers of this struct)
  int64_t prefetch_wasted = 0;  // = cache.prefetch_wasted
};

class CachedExpertProvider final : public ExpertProvider {
 public:
  // Bytes of one routed expert as a slot holds it (all experts of a model share one layout; checked).
  static int64_t expert_bytes(const ModelWeights& w);

  // w: the experts' home (host) copies; must outlive the provider, as must arena. Layers without experts (none
  // in Qwen3.5) are not supported. prefetch: turn hints into prefetches.
  CachedExpertProvider(const ModelWeights& w, const ExpertCacheConfig& cfg, ExpertArena& arena, bool prefetch);

  void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override;
  void release(int layer) override;
  bool wants_hints() const override { return prefetch_; }
  void hint(int layer, std::span<const int32_t> ids) override;

  ExpertProviderStats stats() const;
  const ExpertCacheConfig& config() const { return cache_.config(); }

 private:
  // A matrix of the slot layout: where it starts in the blob, and the template it copies its metadata from.
  struct Part {
    int64_t offset, bytes;
  };
  void copy_expert(int layer, int32_t expert, uint8_t* dst);
  ExpertWeights view_at(const uint8_t* base) const;
  void issue(int layer, const std::vector<ExpertCopy>& copies);

  const ModelWeights& w_;
  ExpertCache cache_;
  ExpertArena& arena_;
  bool prefetch_;
  ExpertWeights layout_;                 // expert 0 of layer 0 with its views' data as offsets into a blob
  std::vector<std::vector<ExpertWeights>> slot_views_, stream_views_;  // [layer][slot | buffer]
  std::vector<int32_t> distinct_;                                      // hint scratch
  int64_t copy_ns_ = 0;  // wall time of issue(): with the host arena's synchronous memcpy, all of it exposed
};

}  // namespace hlwq
