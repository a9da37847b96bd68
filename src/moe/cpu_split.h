// Which routed experts of a step run on the CPU instead of the GPU (issue 8 item 3): the modes of --cpu-experts and
// the cost model of `auto`, as pure functions the GPU's slot planner (expert_cache_dev.cu, inside the decode graph)
// and the CPU unit tests both call. No CUDA header; with nvcc the functions are also __device__.
//
// Modes (with a GPU expert cache; a "miss" is a needed expert of the step that no slot holds):
//  - off:  every miss crosses PCIe (copied into a slot, or read in place when no unpinned slot is left).
//  - all:  every miss is computed on the CPU, so no GEMM of the step waits on PCIe; a miss is still admitted into
//          a free slot as with off (the copy overlaps the CPU's work), so the cache warms and later steps hit.
//  - auto: per MoE layer and step, the last n_cpu misses in request order go to the CPU and are NOT copied (their
//          bytes never cross PCIe), the others behave as with off. n_cpu minimizes the step's miss time:
//            t_gpu(n) = (m − n) · pcie_ns          m misses, pcie_ns = B / (pinned H2D bandwidth)
//            t_cpu(n) = n > 0 ? cpu_fixed_ns + n · cpu_ns : 0
//                                                  cpu_ns = one more expert for one token on the CPU, cpu_fixed_ns =
//                                                  the host round trip of the side branch (activations out, host
//                                                  node, rows back) plus the CPU call's own fixed part (its parallel
//                                                  region's start and barriers): both measured at load from host
//                                                  nodes of 1 and of J experts (cpu_call_costs), each timed from
//                                                  the thread that waits for it, as in a step
//          The two paths run concurrently (the CPU's side branch of the step's graph overlaps the GPU's copies
//          and GEMMs), so the step pays max(t_gpu, t_cpu): n_cpu = argmin_n max(t_gpu(n), t_cpu(n)), the smallest
//          such n on ties (the GPU path also warms the cache). The last misses in request order are the ones the
//          LRU planner would stream (no slot left), so those leave PCIe first.
//          The model charges the CPU per expert, not per token: it holds for decode-sized steps, where the CPU's
//          gemv reads each expert once for up to kGemvMaxTokens tokens; a step of more than kCpuSplitMaxTokens
//          tokens keeps every miss on the GPU (prefill: the CPU's time grows with the tokens, PCIe's does not).
// --n-cpu-moe K (llama.cpp's spelling and meaning) is separate: every routed expert of the first K MoE layers is
// computed on the CPU and none of them is placed on the GPU.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define HLWQ_HD __host__ __device__
#else
#define HLWQ_HD
#endif

namespace hlwq {

enum class CpuExperts : uint8_t { off = 0, automatic = 1, all = 2 };

// Largest step (tokens) for which `auto` considers the CPU (see above).
constexpr int64_t kCpuSplitMaxTokens = 16;

// Per-expert costs of the two paths, in nanoseconds (see the cost model above).
struct CpuSplitCosts {
  float pcie_ns = 0;       // one expert over PCIe (copied or read in place)
  float cpu_ns = 0;        // one expert computed on the CPU (one token)
  float cpu_fixed_ns = 0;  // once per layer and step that sends anything to the CPU
};

// The CPU's call time split into a part per expert and a fixed part per call, from t1_ns (one expert) and tJ_ns (J
// distinct experts, J ≥ 2), each of one token: per = (tJ − t1) / (J − 1), clamped to [0, t1] (noise must not price
// an expert below nothing or above a whole call); fixed = t1 − per. Charging the whole of t1 per expert (as before)
// overstates J experts by (J − 1) · fixed. (On the GPU host the one-expert call took 47.6 µs, where its 1.6 MB take
// 19 µs at the host's read ceiling: how much of the rest is fixed is what the two calls measure.)
struct CpuCallCosts {
  float per_expert_ns = 0, fixed_ns = 0;
};
inline CpuCallCosts cpu_call_costs(double t1_ns, double tJ_ns, int J) {
  double per = J >= 2 ? (tJ_ns - t1_ns) / double(J - 1) : t1_ns;
  per = per < 0 ? 0 : per > t1_ns ? t1_ns : per;
  return {float(per), float(t1_ns - per)};
}

// How many of a step's `misses` (the last ones in request order) run on the CPU.
HLWQ_HD inline int cpu_split_count(CpuExperts mode, int misses, const CpuSplitCosts& c) {
  if (misses <= 0 || mode == CpuExperts::off) return 0;
  if (mode == CpuExperts::all) return misses;
  int best = 0;
  float best_t = float(misses) * c.pcie_ns;
  for (int n = 1; n <= misses; ++n) {
    const float tg = float(misses - n) * c.pcie_ns, tc = c.cpu_fixed_ns + float(n) * c.cpu_ns;
    const float t = tg > tc ? tg : tc;
    if (t < best_t) best = n, best_t = t;
  }
  return best;
}

// Whether `auto` wires the CPU's side branch into the step at all. The branch costs every MoE layer its host round
// trip, also in the steps where the plan sends it nothing (the graph's join waits for the host node either way). On
// the H200 host auto computed no expert on the CPU in a 32-step run and still took 10.2 ms a step against off's 6.2
// (bench/cuda/NOTES.md, eleventh session); the fixed part measured at load, round trip included, came out at 73 to
// 187 µs in three loads, the per-expert part at 23 to 46 µs (noisy), one expert over PCIe at 33 µs. So auto is wired
// only where the CPU's whole call for one expert, round trip included, is shorter than that expert over PCIe: then
// the trip every layer pays is under one expert's copy, and a lone miss gains on the CPU even without overlap.
inline bool cpu_split_wired(const CpuSplitCosts& c) { return c.cpu_fixed_ns + c.cpu_ns < c.pcie_ns; }

inline const char* cpu_experts_name(CpuExperts m) {
  return m == CpuExperts::all ? "all" : m == CpuExperts::automatic ? "auto" : "off";
}

}  // namespace hlwq
