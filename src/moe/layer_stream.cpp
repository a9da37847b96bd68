// plan_stream_rounds (see layer_stream.h).
#include "moe/layer_stream.h"

#include <algorithm>

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

StreamAdmission plan_stream_admission(std::span<const int> tile_mat, std::span<const int> expert_slot,
                                      std::span<const int> slot_expert, std::span<const long long> slot_used) {
  const int E = int(expert_slot.size()), N = int(slot_expert.size());
  HLWQ_CHECK(slot_used.size() == slot_expert.size(), "stream admission: {} slots, {} recencies", N, slot_used.size());
  std::vector<int64_t> tiles(size_t(E), 0);  // the step's tiles per routed expert
  for (int m : tile_mat)
    if (m >= 0 && m < E) ++tiles[size_t(m)];
  StreamAdmission a;
  std::vector<char> pinned(size_t(N), 0);
  std::vector<int> occupant(slot_expert.begin(), slot_expert.end());
  std::vector<int> staged;
  for (int e = 0; e < E; ++e) {
    if (tiles[size_t(e)] == 0) continue;
    const int s = expert_slot[size_t(e)];
    if (s >= 0) {
      HLWQ_CHECK(s < N && occupant[size_t(s)] == e, "stream admission: expert {} maps to slot {}, which holds {}", e, s,
                 s < N ? occupant[size_t(s)] : -2);
      pinned[size_t(s)] = 1;
      a.touch.emplace_back(e, s);
    } else {
      staged.push_back(e);
    }
  }
  std::stable_sort(staged.begin(), staged.end(), [&](int x, int y) { return tiles[size_t(x)] > tiles[size_t(y)]; });
  for (int e : staged) {
    int v = -1;
    for (int s = 0; s < N; ++s) {
      if (pinned[size_t(s)]) continue;
      const bool empty = occupant[size_t(s)] < 0;
      if (v < 0 || (empty && occupant[size_t(v)] >= 0) ||
          (empty == (occupant[size_t(v)] < 0) && !empty && slot_used[size_t(s)] < slot_used[size_t(v)]))
        v = s;
    }
    if (v < 0) break;  // every slot is pinned by this step
    pinned[size_t(v)] = 1;
    occupant[size_t(v)] = e;
    a.admit.emplace_back(e, v);
  }
  return a;
}

}  // namespace hlwq
