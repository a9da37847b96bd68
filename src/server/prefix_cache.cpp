#include "server/prefix_cache.h"

#include <algorithm>

namespace hlwq::server {

void PrefixCache::put(std::vector<int32_t> tokens, Sequence seq) {
  entries_.push_back({std::move(tokens), std::move(seq), ++clock_});
}

std::optional<PrefixCache::Hit> PrefixCache::take(const std::vector<int32_t>& prompt) {
  auto best = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->tokens.size() < prompt.size() && std::equal(it->tokens.begin(), it->tokens.end(), prompt.begin()) &&
        (best == entries_.end() || it->tokens.size() > best->tokens.size()))
      best = it;
  if (best == entries_.end()) return std::nullopt;
  Hit h{std::move(best->seq), int64_t(best->tokens.size())};
  entries_.erase(best);
  return h;
}

int64_t PrefixCache::kv_blocks(const StatePool& pool) const {
  int64_t n = 0;
  for (const Entry& e : entries_) n += int64_t(pool.blocks(e.seq.slot()).size());
  return n;
}

bool PrefixCache::evict_lru() {
  if (entries_.empty()) return false;
  entries_.erase(std::min_element(entries_.begin(), entries_.end(),
                                  [](const Entry& a, const Entry& b) { return a.stored < b.stored; }));
  return true;
}

}  // namespace hlwq::server
