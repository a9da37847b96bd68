// SnapshotStore and the choice of snapshot boundaries (see snapshot_store.h).
#include "server/snapshot_store.h"

#include <algorithm>

#include "core/error.h"

namespace hlwq::server {

SnapshotStore::Found SnapshotStore::find(std::span<const int32_t> prompt) {
  Entry* best = nullptr;
  for (Entry& e : entries_)
    if (e.tokens.size() < prompt.size() && std::equal(e.tokens.begin(), e.tokens.end(), prompt.begin()) &&
        (!best || e.tokens.size() > best->tokens.size()))
      best = &e;
  if (!best) return {};
  best->used = ++clock_;
  return {&best->seq, int64_t(best->tokens.size())};
}

int64_t SnapshotStore::common_prefix(std::span<const int32_t> prompt) const {
  int64_t best = 0;
  for (const Entry& e : entries_) {
    const size_t n = std::min(e.tokens.size(), prompt.size());
    const auto m = std::mismatch(e.tokens.begin(), e.tokens.begin() + ptrdiff_t(n), prompt.begin());
    best = std::max(best, int64_t(m.first - e.tokens.begin()));
  }
  return best;
}

bool SnapshotStore::contains(std::span<const int32_t> tokens) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return std::ranges::equal(e.tokens, tokens); });
}

bool SnapshotStore::make_room() {
  if (capacity_ == 0) return false;
  while (entries_.size() >= capacity_) evict_lru();
  return true;
}

void SnapshotStore::put(std::vector<int32_t> tokens, Sequence snap) {
  HLWQ_CHECK(entries_.size() < capacity_, "snapshot store is full ({} entries)", capacity_);
  entries_.push_back({std::move(tokens), std::move(snap), ++clock_});
}

bool SnapshotStore::evict_lru() {
  if (entries_.empty()) return false;
  entries_.erase(std::min_element(entries_.begin(), entries_.end(),
                                  [](const Entry& a, const Entry& b) { return a.used < b.used; }));
  return true;
}

void SnapshotStore::blocks(const StatePool& pool, std::vector<int32_t>& out) const {
  for (const Entry& e : entries_)
    if (e.seq) {
      const auto b = pool.blocks(e.seq.slot());
      out.insert(out.end(), b.begin(), b.end());
    }
}

std::vector<int64_t> snapshot_boundaries(int64_t from, int64_t n, int64_t block, int64_t interval, int64_t branch) {
  HLWQ_CHECK(block >= 1, "KV block size must be positive, got {}", block);
  std::vector<int64_t> at;
  auto add = [&](int64_t b) {
    if (b > from && b <= n && b % block == 0) at.push_back(b);
  };
  const int64_t step = interval / block * block;
  if (step > 0)
    for (int64_t b = step; b <= n; b += step) add(b);
  add(branch / block * block);
  add(n / block * block);
  std::sort(at.begin(), at.end());
  at.erase(std::unique(at.begin(), at.end()), at.end());
  return at;
}

}  // namespace hlwq::server
