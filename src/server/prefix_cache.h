// Prefix cache of the server (continuation form): a finished request's sequence is kept, with the exact tokens it
// has consumed, in a slot the running requests do not need; a later request whose prompt extends those tokens (the
// next turn of a chat: the earlier prompt, the answer, the new user turn) takes the sequence over and prefills
// only the rest. The model's state — attention KV and the Gated DeltaNet recurrent and conv state — is then exactly
// that of having run the cached tokens, so the hybrid model needs no state surgery. Limits, by design: a hit needs
// the cached tokens to be a strict prefix of the prompt (the answer re-encoded by the template must give the
// same tokens the model generated; at least one prompt token is left to produce logits), and a cached sequence is
// never shared by two requests. Memory is bounded: entries live only in free sequence slots (the pool is sized for
// max_seqs sequences of the full length), and the least recently used one is evicted when a slot is needed.
// Not thread-safe: only the engine thread uses it.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "model/model.h"

namespace hlwq::server {

class PrefixCache {
 public:
  // Keeps seq, whose state is that of having consumed exactly `tokens`.
  void put(std::vector<int32_t> tokens, Sequence seq);
  struct Hit {
    Sequence seq;
    int64_t reused = 0;  // prompt tokens already in seq's state
  };
  // Removes and returns the entry with the longest token list that is a strict prefix of prompt, if any.
  std::optional<Hit> take(const std::vector<int32_t>& prompt);
  // What take would reuse (0: nothing), without taking it.
  int64_t longest(const std::vector<int32_t>& prompt) const;
  // Longest common prefix of prompt with any entry's tokens.
  int64_t common_prefix(const std::vector<int32_t>& prompt) const;
  // Drops the least recently stored entry (freeing its slot and KV blocks); false when empty.
  bool evict_lru();
  size_t size() const { return entries_.size(); }
  // The KV blocks held by the cached sequences, appended to out.
  void blocks(const StatePool& pool, std::vector<int32_t>& out) const;

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    Sequence seq;
    uint64_t stored = 0;
  };
  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

}  // namespace hlwq::server
