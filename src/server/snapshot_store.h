// Prefix snapshots of the server (block-level prefix sharing on the hybrid model): a snapshot is a frozen fork of
// a sequence taken at a KV block boundary (Model::fork) — it shares the sequence's KV blocks by reference and holds
// a copy of its Gated DeltaNet conv and recurrent state, which cannot be cut at an arbitrary token. A request whose
// prompt starts with a snapshot's tokens forks the snapshot and prefills only the rest, whichever request took the
// snapshot (the same system prompt and tools from many clients, an edited or branched chat).
// Invariants: every entry's token count is a positive multiple of the block size and its sequence sits exactly
// there; no two entries hold the same tokens; at most capacity() entries (each one is a state-pool slot beyond the
// running sequences' and its GDN state: ~60 MB on Qwen3.6), the least recently used evicted first.
// Not thread-safe: only the engine thread uses it.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace hlwq::server {

class SnapshotStore {
 public:
  explicit SnapshotStore(size_t capacity) : capacity_(capacity) {}
  size_t capacity() const { return capacity_; }
  size_t size() const { return entries_.size(); }

  // The snapshot with the most tokens that are a strict prefix of prompt (a token must be left to produce
  // logits), marked as used; null when none.
  struct Found {
    const Sequence* seq = nullptr;
    int64_t tokens = 0;
  };
  Found find(std::span<const int32_t> prompt);
  // Longest common prefix of prompt with any snapshot's tokens (where a new prompt branches off the cached ones).
  int64_t common_prefix(std::span<const int32_t> prompt) const;
  bool contains(std::span<const int32_t> tokens) const;
  // Room for one more: evicts the least recently used entry when full (false when the capacity is 0).
  bool make_room();
  // Stores snap, whose state is that of having consumed exactly `tokens` (call make_room first).
  void put(std::vector<int32_t> tokens, Sequence snap);
  bool evict_lru();
  // The KV blocks the snapshots hold (a block shared by several counts once) appended to out.
  void blocks(const StatePool& pool, std::vector<int32_t>& out) const;

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    Sequence seq;
    uint64_t used = 0;
  };
  size_t capacity_;
  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

// The block boundaries at which a prompt's prefill stops to take a snapshot, ascending, each in (from, n] where
// n = prompt tokens: every `interval` tokens (a rounded-down multiple of the block size; 0: none) so that a shared
// prefix of unknown length (the system prompt of many clients) is reused up to one interval short from the second
// client on; the block boundary at or below `branch` (where the prompt leaves the longest prefix it shares with the
// cache: a later request on the same branch resumes exactly there); and the end of the prompt's last full block (the
// whole conversation so far: its next turn or a regenerated answer resumes there). Each boundary costs the prefill
// a batch break and a state copy, and the store a slot: hence an interval of many blocks, not every block.
std::vector<int64_t> snapshot_boundaries(int64_t from, int64_t n, int64_t block, int64_t interval, int64_t branch);

}  // namespace hlwq::server
