// plan_stream_rounds (see layer_stream.h).
#include "moe/layer_stream.h"

#include "core/error.h"

namespace hlwq {

std::vector<StreamRound> plan_stream_rounds(std::span<const int> tile_mat, std::span<const int> expert_slot, int S) {
  HLWQ_CHECK(S >= 1, "layer streaming: {} staging slots per round", S);
  const int E = int(expert_slot.size());
  size_t live = 0;  // the live tiles: [0, live)
  while (live < tile_mat.size() && tile_mat[live] != -1) ++live;
  for (size_t t = live; t < tile_mat.size(); ++t)
    HLWQ_CHECK(tile_mat[t] == -1, "layer streaming: tile {} has matrix {} past the unused tile {}: the slot plan "
               "must list its live tiles first", t, tile_mat[t], live);
  std::vector<StreamRound> rounds;
  StreamRound cur;
  int prev = -1;
  for (size_t t = 0; t < live; ++t) {
    const int m = tile_mat[t];
    HLWQ_CHECK(m >= 0 && m >= prev, "layer streaming: tile {} has matrix {} after {}: the slot plan must group its "
               "tiles by matrix in ascending order", t, m, prev);
    if (m == prev) continue;  // the next tile of the same matrix: the run was placed at its first tile
    prev = m;
    const bool stage = m < E && expert_slot[size_t(m)] < 0;
    if (stage && int(cur.staged.size()) == S) {  // the round is full: it ends before this expert's tiles
      cur.n_tiles = int64_t(t) - cur.first_tile;
      rounds.push_back(std::move(cur));
      cur = StreamRound{};
      cur.first_tile = int64_t(t);
    }
    if (stage) {
      const int slot = int(cur.staged.size());
      cur.staged.push_back(m);
      StreamCopyRun* last = cur.copies.empty() ? nullptr : &cur.copies.back();
      if (last && last->expert + last->count == m && last->slot + last->count == slot) ++last->count;
      else cur.copies.push_back({m, slot, 1});
    } else if (m < E) {
      ++cur.resident;
    }
  }
  if (int64_t(live) > cur.first_tile) {
    cur.n_tiles = int64_t(live) - cur.first_tile;
    rounds.push_back(std::move(cur));
  }
  return rounds;
}

}  // namespace hlwq
