// Whole-layer expert streaming for large batches (issue 8 item 2): the plan, on the host and without CUDA, so the
// CPU tests check it and the GPU side (backend/cuda/moe_stream.cuh) only carries it out.
//
// Why: a step of T tokens routes T·k assignments, grouped into 8-slot tiles per expert (moe_route.cuh). The expert
// cache reads a miss it cannot admit in place over PCIe once per tile, so in a prefill (T·k ≫ E: every expert
// needed, many tiles each) a non-resident expert crosses PCIe as many times as it has tiles. Streaming instead
// copies each needed non-resident expert once per step, S experts per round into one of two staging buffers,
// while the GPU computes the previous round from the other buffer (double buffering: copy and compute overlap).
//
// The plan: the slot plan's live tiles come first and are grouped by matrix in ascending order (matrices 0..E−1
// the routed experts, E.. the shared expert's parts), so every round is one contiguous range of tiles. A round
// ends just before the tile run of the (S+1)-th expert it would have to stage; experts already in a cache slot
// and the shared parts need no staging and ride in the round that holds their tiles. Within a round, staged
// expert j goes to staging slot j; consecutive experts in consecutive slots are contiguous on both sides, so they
// cross as one copy (CopyRun).
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace hlwq {

// The smallest batch that streams by default, in tokens. Measured on the H200 (BENCHMARKS.md, offload matrix,
// Qwen3.6 under the routing trace, 8 slots): streaming every batch against none, prefill of 64 / 128 / 256 / 512 /
// 1024 tokens ran at 417 / 605 / 928 / 1,495 / 2,450 against 386 / 494 / 636 / 799 / 957 tok/s. It pays from 64
// on; 128 leaves a margin for a warm cache, where little is missing and the per-layer sync is the whole cost.
inline constexpr int64_t kDefaultStreamMinTokens = 128;

struct StreamCopyRun {
  int expert = 0, slot = 0, count = 0;  // experts [expert, expert + count) → staging slots [slot, slot + count)
};

struct StreamRound {
  int64_t first_tile = 0, n_tiles = 0;  // the tiles [first_tile, first_tile + n_tiles) of the step
  std::vector<int> staged;              // experts copied for this round: staged[j] goes to staging slot j
  std::vector<StreamCopyRun> copies;    // the same copies, merged where contiguous
  int resident = 0;                     // routed experts of the round already in a cache slot (hits)
};

// tile_mat [n_tiles]: each tile's matrix, live tiles first in ascending matrix order, then −1 (moe_route.cuh);
// expert_slot [E]: the cache slot of each routed expert, −1 when not resident; S ≥ 1 staging slots per round.
// Admission (which staged experts also stay in the cache, and where; the copy is device to device from staging, so
// it costs no PCIe): the cache's own LRU rule applied to the step — the resident experts the step uses are pinned
// and become the most recent; then the staged experts, most tiles first (ties to the lower id), each take the
// lowest empty slot, else the least recently used unpinned one (ties to the lower slot), until every slot is
// pinned. touch: (expert, slot) of the resident experts used; admit: (expert, slot) in that order.
struct StreamAdmission {
  std::vector<std::pair<int, int>> touch, admit;
};
// tile_mat as below; expert_slot [E], slot_expert [N] (−1 = empty) and slot_used [N] (recency) of the cache.
StreamAdmission plan_stream_admission(std::span<const int> tile_mat, std::span<const int> expert_slot,
                                      std::span<const int> slot_expert, std::span<const long long> slot_used);

// Matrices ≥ E (the shared expert's parts) live on the device and are never staged. Throws when tile_mat breaks
// its invariant: a live tile after an unused one, matrices out of order, a negative id other than −1.
std::vector<StreamRound> plan_stream_rounds(std::span<const int> tile_mat, std::span<const int> expert_slot, int S);

}  // namespace hlwq
