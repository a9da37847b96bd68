// Backend: the narrow interface between the Qwen3.5-MoE forward schedule (src/model) and the code that computes
// (src/backend/cpu; a CUDA backend implements the same calls). The cut is at mixer granularity so that a GPU
// backend runs a whole batch without a host round trip between layers: the schedule names activation buffers
// (Act), never pointers, and every byte a backend computes on — its weights, the paged KV cache, the Gated DeltaNet
// states, the activations and all scratch — is allocated when the backend is made. Nothing is allocated inside a
// forward (tests/model/test_no_alloc.cpp checks the CPU backend).
//
// A Batch carries the tokens of several sequences (prefill chunks and decode tokens mixed): sequence s owns batch
// rows [t0, t0 + n) at positions pos0 .. pos0 + n − 1, its own state-pool slot (GDN conv and recurrent state) and
// its own KV block table. GDN runs each sequence's recurrence on its own slot; attention reads each sequence's own
// pages; MoE groups the tokens of all sequences by expert. The schedule per batch (src/model/model.cpp):
//
//   begin_batch(b); if replay_layers(): skip to end_layers
//   embed(h); rmsnorm(0, input, h → xn)
//   per layer l:  gdn_mixer(l, xn → y) | attn_mixer(l, xn → y);  add_rmsnorm(h += y, l post_attention → xn)
//                 moe_route(l, xn); [moe_hint(l + 1, xn)]
//                 moe_experts_add_rmsnorm(l, xn → y; h += y, next layer's input norm, or the final norm → xn)
//   end_layers(); lm_head(xn rows → logits)
//
// Adding an op: declare it here with its shape contract, implement it in every backend (the CPU one first, as the
// reference), call it from the schedule, and add a differential test against the CPU backend (docs/architecture.md).
// Dimension legend: T batch tokens, H hidden, V vocab.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "moe/expert_cache.h"
#include "moe/route_trace.h"
#include "quant/calib_stats.h"

namespace hlwq {

// One sequence's part of a batch.
struct BatchSeq {
  int32_t slot = -1;                // state-pool slot (GDN state) of this sequence
  int64_t pos0 = 0;                 // position of its first token here (= tokens the sequence already holds)
  int64_t t0 = 0, n = 0;            // its tokens are batch rows [t0, t0 + n)
  std::span<const int32_t> blocks;  // KV block table: position p lives in block blocks[p / block_tokens]
};

struct Batch {
  std::span<const int32_t> tokens;  // [T] token ids
  std::span<const BatchSeq> seqs;   // ordered by t0, together covering rows [0, T) exactly
  // The schedule will issue the plain layer sequence with no read() between begin_batch and end_layers, so a
  // backend may record it (a CUDA graph) and replay the recording for later batches of the same shape.
  bool recordable = false;
};

// Index of the sequence that owns batch row t (seqs ordered by t0, non-empty).
inline size_t batch_seq_of_row(std::span<const BatchSeq> seqs, int64_t t) {
  size_t lo = 0, hi = seqs.size();
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    if (seqs[mid].t0 <= t) lo = mid;
    else hi = mid;
  }
  return lo;
}

// The activation buffers of the workspace, each [T, H] for the current batch.
enum class Act : uint8_t { h, xn, y };

enum class NormKind : uint8_t { input, post_attention, final_norm };

// Storage type of the paged KV cache. bf16 halves its memory (SPEC §5: 20 KiB per token for Qwen3.6); f32 keeps
// the forward bit-for-bit comparable with the transformers goldens (docs/numerics.md).
enum class KvDtype : uint8_t { bf16, f32 };

// Which form of the Gated DeltaNet delta rule to run: both are equal (to summation order); tests force each.
enum class GdnMode : uint8_t { auto_select, recurrent, chunked };

// Sizes a backend allocates for at construction.
struct BackendLimits {
  int64_t max_batch_tokens = 1024;  // T of the largest batch: sizes the workspace
  int32_t max_seqs = 1;             // state-pool slots (GDN states)
  int64_t kv_blocks = 0;            // KV pages per attention layer
  int64_t kv_block_tokens = 16;     // positions per KV page
  KvDtype kv_dtype = KvDtype::bf16;
};

// How the token of one logits row is chosen by a backend that samples (backend/cuda/sampling.cuh): temperature 0
// is greedy (lowest id among equal maxima); otherwise temperature → top-k (1..1024, ties at the k-th logit kept)
// → min-p → top-p → the draw u ∈ [0, 1), which the caller takes from the sequence's own RNG (runtime/sampler.h),
// so a seed gives the same tokens as the host sampler. Penalties are not applied here.
struct RowSampling {
  float temperature = 0.f;
  int32_t top_k = 0;
  float top_p = 1.f, min_p = 0.f;
  double u = 0.0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Takes the batch of the following calls (ids, positions, slots and block tables are copied; b need not
  // outlive the call). T ≤ max_batch_tokens, every slot < max_seqs, every block < kv_blocks (the schedule checks).
  virtual void begin_batch(const Batch& b) = 0;
  // Layer-schedule recording: true when the backend has just run the whole layer schedule of this batch by itself
  // (a replay of a recording of an earlier batch of the same shape); then the schedule goes straight to end_layers.
  // end_layers closes the layer schedule (a backend that recorded it instantiates and runs the recording there).
  virtual bool replay_layers() { return false; }
  virtual void end_layers() {}
  virtual void embed(Act out) = 0;                                              // out [T, H] = embed_tokens[ids]
  virtual void rmsnorm(int layer, NormKind which, Act in, Act out) = 0;         // out = norm(in), zero-centred
  virtual void add_rmsnorm(Act h, Act y, int layer, NormKind which, Act out) = 0;  // h += y; out = norm(h)
  // Mixers, each out [T, H] from in [T, H], advancing the batch's sequences: gdn_mixer updates each slot's conv
  // and recurrent state, attn_mixer writes each token's K/V at its position into its sequence's pages.
  virtual void gdn_mixer(int layer, Act in, Act out) = 0;
  virtual void attn_mixer(int layer, Act in, Act out) = 0;
  // MoE in three steps: route (router softmax in fp32, top-k, renormalized) into the workspace; optionally hint
  // the expert provider with layer l's router applied to this hidden state (the next layer's likely experts);
  // then the shared expert and the routed experts (found through the provider), weighted and summed.
  virtual void moe_route(int layer, Act in) = 0;
  virtual bool moe_wants_hint() const = 0;
  virtual void moe_hint(int layer, Act in) = 0;
  virtual void moe_experts(int layer, Act in, Act out) = 0;
  // The MoE block's end and the norm after it: y = moe_experts(in); h += y; out = norm(h). A backend may fuse the
  // experts' weighted sum into the norm (y is then scratch); this default runs the two ops.
  virtual void moe_experts_add_rmsnorm(int layer, Act in, Act h, Act y, int norm_layer, NormKind which, Act out) {
    moe_experts(layer, in, y);
    add_rmsnorm(h, y, norm_layer, which, out);
  }
  // logits [rows.size(), V] (host, fp32) = lm_head(in[rows]).
  virtual void lm_head(Act in, std::span<const int64_t> rows, float* logits) = 0;
  // Token choice on the backend, so only ids cross to the host: ids[i] = the token chosen by how[i] from
  // lm_head(in[rows[i]]) among ids [0, n_valid). False when this backend does not sample (the caller then asks
  // lm_head for logits). A row it could not choose for (its limits) gets −1: lm_head for that row still works, as
  // `in` is unchanged. A row with a NaN or +inf logit throws, as the host sampler does.
  virtual bool lm_head_sample(Act in, std::span<const int64_t> rows, int64_t n_valid,
                              std::span<const RowSampling> how, int32_t* ids) {
    return false;
  }
  // logits [n, V] (host) = lm_head(x [n, H] host): for evaluation, which keeps hidden states and streams logits.
  virtual void lm_head_host(const float* x, int64_t n, float* logits) = 0;
  // dst [T, H] (host, fp32) = an activation buffer: hidden-state capture for goldens and layer-by-layer diffs.
  virtual void read(Act a, float* dst) = 0;
  // A few lines saying where the backend placed what (the device memory plan); empty when there is nothing to say.
  virtual std::string memory_plan() const { return {}; }
  // Counters of the backend's own expert cache (the GPU's, expert_cache_dev.cuh): false when it has none.
  virtual bool expert_cache_stats(ExpertCacheStats& out) const { return false; }
  // Benchmarks (issue 8 item 5): replay a routing trace (moe/route_trace.h) instead of the router's choices. Each
  // batch of T tokens takes the trace's next T rows (from row 0 after this call, wrapping); the router still runs
  // and its renormalized top-k weights are kept — the trace's j-th expert of a token gets the j-th largest — so
  // only which experts run changes. The trace must match the model's MoE layers, experts and top-k. null: the
  // model's own routing again.
  virtual void set_route_trace(std::shared_ptr<const RouteTrace> trace) {
    HLWQ_CHECK(!trace, "the {} backend cannot replay a routing trace", name());
  }
  // Calibration statistics kept by the backend itself (hlwq quantize --calib; CUDA: on the device,
  // cuda/input_stats.cuh): from this call on, every forward adds H += Σ x xᵀ over the inputs of the linears `keys`
  // names (module names, each its input's own key: linear_input_key; a routed expert over only the tokens routed to
  // it). Returns how many keys, from the front, it took: fewer than asked when its memory holds no more (the rest
  // need another pass), 0 when this backend keeps no such sums (the CPU backend hands rows to a host tap instead:
  // cpu_backend.h). Forwards then run as plain launches (no recorded decode step).
  virtual int64_t begin_input_stats(const std::vector<std::string>& keys) { return 0; }
  // Ends it: the sums by key (a linear that saw no token is absent).
  virtual LinearStatsMap take_input_stats() { fail("the {} backend keeps no calibration statistics", name()); }
  // Zeroes the GDN conv and recurrent state of a slot (a new or reset sequence). KV pages need no clearing:
  // attention reads only positions a sequence has written.
  virtual void reset_slot(int32_t slot) = 0;
  // Copies the GDN conv and recurrent state of every GDN layer from slot `from` to slot `to` (from ≠ to; both
  // < max_seqs): a prefix snapshot or a sequence resumed from one. KV pages are not copied: sequences share them
  // by block (StatePool::fork). Ordered with the forwards around it (a GPU copies on its stream).
  virtual void copy_slot_state(int32_t from, int32_t to) = 0;
};

}  // namespace hlwq
