// The engine thread: the only thread that touches the Model. It loops: admit waiting jobs while sequence slots are
// free, build ONE forward_batch from every running sequence's next step — a decode token for sequences that are
// generating (first, so that running requests keep their pace) and prefill chunks for new ones, bounded by the
// model's batch token budget — then sample each sequence that produced logits and push its text to its channel.
// A cancelled request (its client went away) is dropped, freeing its sequence, before the next batch is built.
// A failed forward ends the requests of that batch with an error; the server keeps serving the others.
// With the prefix cache on, a request that finished normally leaves its sequence in the PrefixCache (free slots
// only) and a new request whose prompt extends it continues it (prefix_cache.h); and prefills stop at chosen KV
// block boundaries to keep snapshots (snapshot_store.h) from which any later request sharing that prefix resumes.
// A request starts from whichever of the two reuses more of its prompt. Snapshots hold KV blocks: when a batch
// needs more blocks than are free, snapshots and then cached sequences are evicted (LRU) until it fits.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/tokenizer.h"
#include "server/queue.h"

namespace hlwq::server {

struct EngineConfig {
  int32_t max_seqs = 1;
  std::vector<int32_t> eos_ids;
  int64_t n_valid_tokens = 0;  // ids ≥ this are never sampled (0: the whole vocabulary)
  int64_t max_len = 0;         // every sequence may grow to this (the server's max model length)
  bool prefix_cache = true;
  // Prefix snapshots (with prefix_cache): state-pool slots beyond max_seqs (the model is loaded with
  // max_seqs + snapshots; fewer spare slots cap the store), and the interval in tokens of the periodic snapshot
  // boundaries (0: none).
  int32_t snapshots = 0;
  int64_t snapshot_interval = 0;
};

// Runs until queue.drain() was called and every job is finished.
void run_engine(Model& model, const Tokenizer& tok, const EngineConfig& cfg, RequestQueue& queue);

}  // namespace hlwq::server
