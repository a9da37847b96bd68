// StatePool: the host-side bookkeeping of the per-sequence state that a backend stores (backend.h): which
// state-pool slots are open, each open sequence's position, its length cap and its KV block table, and the free
// list of KV blocks shared by all sequences. Everything is sized at construction — block tables reserve room for
// every block of the pool — so nothing here allocates while a model runs. A request that does not fit (no free
// slot, too few free blocks, past its length cap) is refused with a clear error before any state changes.
//
// Blocks are reference-counted so that sequences can share a prefix (fork): a fork takes the source's blocks at a
// block boundary (the source's position is a multiple of block_tokens, so every shared block is full) and starts
// at that position. A shared block is never written: a sequence writes only positions ≥ its position, which lie
// in blocks past every block it shares. A block goes back to the free list when its last holder lets it go.
//
// A forward that fails part-way leaves the sequences it touched with state that no longer matches their position
// (some layers advanced, others not): the schedule marks them poisoned, and every later use of such a sequence
// fails with the original reason until it is reset.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace hlwq {

struct StatePoolConfig {
  int32_t max_seqs = 1;         // sequences open at once
  int64_t kv_blocks = 0;        // KV blocks shared by all sequences
  int64_t block_tokens = 16;    // positions per block
};

class StatePool {
 public:
  explicit StatePool(const StatePoolConfig& cfg);

  const StatePoolConfig& config() const { return cfg_; }
  // A free slot for a sequence of at most max_len tokens; throws when all max_seqs slots are open.
  int32_t open(int64_t max_len);
  // Frees the slot and its blocks (no-op for a slot that is not open).
  void close(int32_t slot);
  // Back to position 0, blocks freed, poison cleared (the backend must zero the slot's GDN state).
  void reset(int32_t slot);

  int64_t pos(int32_t slot) const { return at(slot).pos; }
  int64_t max_len(int32_t slot) const { return at(slot).max_len; }
  std::span<const int32_t> blocks(int32_t slot) const { return at(slot).blocks; }
  bool is_open(int32_t slot) const;
  // Throws "sequence is unusable: …" for a poisoned slot, and for a slot that is not open.
  void check_usable(int32_t slot) const;
  void poison(int32_t slot, const std::string& reason);

  // Blocks a slot needs to hold len positions, beyond those it has.
  int64_t blocks_needed(int32_t slot, int64_t len) const;
  int64_t free_blocks() const { return int64_t(free_.size()); }
  // Gives the slot the blocks it needs for len positions (call only after checking blocks_needed against
  // free_blocks for every sequence of a batch, so that a batch is admitted whole or not at all).
  void grow(int32_t slot, int64_t len);
  void advance(int32_t slot, int64_t n);
  // Opened slot `dst` (position 0, no blocks) takes the blocks of `src` (usable, position a whole number of
  // blocks) and its position: the KV side of a fork (the backend copies the GDN state).
  void fork(int32_t src, int32_t dst);
  // Holders of a block (0: free).
  int32_t block_refs(int32_t block) const;

 private:
  struct Slot {
    bool open = false;
    bool poisoned = false;
    std::string poison_reason;
    int64_t pos = 0, max_len = 0;
    std::vector<int32_t> blocks;  // capacity kv_blocks, reserved at construction
  };
  const Slot& at(int32_t slot) const;
  Slot& at(int32_t slot);
  void free_blocks_of(Slot& s);

  StatePoolConfig cfg_;
  std::vector<Slot> slots_;
  std::vector<int32_t> free_;  // free block ids (a stack; capacity kv_blocks)
  std::vector<int32_t> refs_;  // [kv_blocks] slots holding each block
};

}  // namespace hlwq
