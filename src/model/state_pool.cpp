// StatePool (see state_pool.h).
#include "model/state_pool.h"

#include <utility>

#include "core/error.h"

namespace hlwq {

StatePool::StatePool(const StatePoolConfig& cfg) : cfg_(cfg) {
  HLWQ_CHECK(cfg.max_seqs >= 1, "state pool needs at least one sequence slot, got {}", cfg.max_seqs);
  HLWQ_CHECK(cfg.block_tokens >= 1, "KV block size must be positive, got {}", cfg.block_tokens);
  HLWQ_CHECK(cfg.kv_blocks >= 0 && cfg.kv_blocks < (int64_t(1) << 31), "KV pool of {} blocks is out of range",
             cfg.kv_blocks);
  slots_.resize(size_t(cfg.max_seqs));
  for (Slot& s : slots_) s.blocks.reserve(size_t(cfg.kv_blocks));
  free_.reserve(size_t(cfg.kv_blocks));
  refs_.assign(size_t(cfg.kv_blocks), 0);
  // highest id at the bottom of the stack: a fresh pool hands out blocks 0, 1, 2, …
  for (int64_t b = cfg.kv_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

const StatePool::Slot& StatePool::at(int32_t slot) const {
  HLWQ_CHECK(slot >= 0 && slot < cfg_.max_seqs, "sequence slot {} is outside the pool [0, {})", slot, cfg_.max_seqs);
  return slots_[size_t(slot)];
}
StatePool::Slot& StatePool::at(int32_t slot) { return const_cast<Slot&>(std::as_const(*this).at(slot)); }

bool StatePool::is_open(int32_t slot) const { return at(slot).open; }

int32_t StatePool::open(int64_t max_len) {
  HLWQ_CHECK(max_len > 0, "a sequence needs a positive length cap, got {}", max_len);
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (s.open) continue;
    s.open = true;
    s.poisoned = false;
    s.poison_reason.clear();
    s.pos = 0;
    s.max_len = max_len;
    return int32_t(i);
  }
  throw Error(fmt::format("all {} sequence slots are in use (raise the number of sequences the model is loaded "
                          "for, or close one)", cfg_.max_seqs));
}

void StatePool::free_blocks_of(Slot& s) {
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it)
    if (--refs_[size_t(*it)] == 0) free_.push_back(*it);
  s.blocks.clear();
}

void StatePool::close(int32_t slot) {
  Slot& s = at(slot);
  if (!s.open) return;
  free_blocks_of(s);
  s.open = false;
}

void StatePool::reset(int32_t slot) {
  Slot& s = at(slot);
  HLWQ_CHECK(s.open, "sequence slot {} is not open", slot);
  free_blocks_of(s);
  s.pos = 0;
  s.poisoned = false;
  s.poison_reason.clear();
}

void StatePool::check_usable(int32_t slot) const {
  const Slot& s = at(slot);
  HLWQ_CHECK(s.open, "sequence slot {} is not open", slot);
  HLWQ_CHECK(!s.poisoned, "sequence is unusable: an earlier forward failed part-way ({}); reset it", s.poison_reason);
}

void StatePool::poison(int32_t slot, const std::string& reason) {
  Slot& s = at(slot);
  s.poisoned = true;
  s.poison_reason = reason;
}

int64_t StatePool::blocks_needed(int32_t slot, int64_t len) const {
  const Slot& s = at(slot);
  const int64_t need = (len + cfg_.block_tokens - 1) / cfg_.block_tokens;
  return need > int64_t(s.blocks.size()) ? need - int64_t(s.blocks.size()) : 0;
}

void StatePool::grow(int32_t slot, int64_t len) {
  Slot& s = at(slot);
  const int64_t need = blocks_needed(slot, len);
  HLWQ_CHECK(need <= free_blocks(), "KV pool is full: a sequence needs {} more blocks of {} tokens, {} of {} are free",
             need, cfg_.block_tokens, free_blocks(), cfg_.kv_blocks);
  for (int64_t i = 0; i < need; ++i) {
    s.blocks.push_back(free_.back());
    refs_[size_t(free_.back())] = 1;
    free_.pop_back();
  }
}

void StatePool::fork(int32_t src, int32_t dst) {
  check_usable(src);
  check_usable(dst);
  Slot& from = at(src);
  Slot& to = at(dst);
  HLWQ_CHECK(src != dst, "a sequence cannot fork into itself (slot {})", src);
  HLWQ_CHECK(to.pos == 0 && to.blocks.empty(), "fork target slot {} already holds {} tokens", dst, to.pos);
  HLWQ_CHECK(from.pos % cfg_.block_tokens == 0,
             "a fork needs the source at a block boundary: it holds {} tokens, blocks are {} tokens", from.pos,
             cfg_.block_tokens);
  HLWQ_CHECK(from.pos <= to.max_len, "fork target's length cap {} is below the source's {} tokens", to.max_len,
             from.pos);
  // a usable sequence at a block boundary holds exactly pos / block_tokens blocks, all full
  const size_t n = size_t(from.pos / cfg_.block_tokens);
  HLWQ_CHECK(from.blocks.size() == n, "slot {} holds {} blocks for {} tokens", src, from.blocks.size(), from.pos);
  for (int32_t b : from.blocks) {
    to.blocks.push_back(b);
    ++refs_[size_t(b)];
  }
  to.pos = from.pos;
}

int32_t StatePool::block_refs(int32_t block) const {
  HLWQ_CHECK(block >= 0 && block < int64_t(refs_.size()), "KV block {} is outside the pool [0, {})", block,
             refs_.size());
  return refs_[size_t(block)];
}

void StatePool::advance(int32_t slot, int64_t n) { at(slot).pos += n; }

}  // namespace hlwq
