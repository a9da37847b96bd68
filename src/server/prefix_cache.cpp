#include "server/prefix_cache.h"

#include <algorithm>

namespace hlwq::server {

void PrefixCache::put(std::vector<int32_t> tokens, Sequence seq) {
  entries_.push_back({std::move(tokens), std::move(seq), ++clock_});
}

template <class It>
static It longest_strict_prefix(It begin, It end, const std::vector<int32_t>& prompt) {
  It best = end;
  for (It it = begin; it != end; ++it)
    if (it->tokens.size() < prompt.size() && std::equal(it->tokens.begin(), it->tokens.end(), prompt.begin()) &&
        (best == end || it->tokens.size() > best->tokens.size()))
      best = it;
  return best;
}

int64_t PrefixCache::longest(const std::vector<int32_t>& prompt) const {
  const auto best = longest_strict_prefix(entries_.begin(), entries_.end(), prompt);
  return best == entries_.end() ? 0 : int64_t(best->tokens.size());
}

int64_t PrefixCache::common_prefix(const std::vector<int32_t>& prompt) const {
  int64_t best = 0;
  for (const Entry& e : entries_) {
    const size_t n = std::min(e.tokens.size(), prompt.size());
    const auto m = std::mismatch(e.tokens.begin(), e.tokens.begin() + ptrdiff_t(n), prompt.begin());
    best = std::max(best, int64_t(m.first - e.tokens.begin()));
  }
  return best;
}

std::optional<PrefixCache::Hit> PrefixCache::take(const std::vector<int32_t>& prompt) {
  const auto best = longest_strict_prefix(entries_.begin(), entries_.end(), prompt);
  if (best == entries_.end()) return std::nullopt;
  Hit h{std::move(best->seq), int64_t(best->tokens.size())};
  entries_.erase(best);
  return h;
}

void PrefixCache::blocks(const StatePool& pool, std::vector<int32_t>& out) const {
  for (const Entry& e : entries_)
    if (e.seq) {
      const auto b = pool.blocks(e.seq.slot());
      out.insert(out.end(), b.begin(), b.end());
    }
}

bool PrefixCache::evict_lru() {
  if (entries_.empty()) return false;
  entries_.erase(std::min_element(entries_.begin(), entries_.end(),
                                  [](const Entry& a, const Entry& b) { return a.stored < b.stored; }));
  return true;
}

}  // namespace hlwq::server
