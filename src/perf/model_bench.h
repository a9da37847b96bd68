// The end-to-end benchmark behind `hlwq bench`: prefill tok/s of one sequence of P tokens (all its chunks) and
// decode tok/s of B sequences stepping together (G steps of forward_batch with one token each, after a short
// prompt), each the median of `repeats` timed runs after `warmup` untimed ones, on any device through the Model
// API. Each figure comes with the weight bytes it read (counted from the model: the dense part once per step plus
// the routed experts), the GB/s that makes, the speed of light (those bytes at the read ceiling measured in the same
// run: CPU read of ≥ 1 GiB with all threads, or measure_cuda_ceilings) and the fraction achieved.
// Routed experts: on the CPU the distinct experts of every layer and step are counted through a pass-through expert
// provider; the CUDA backend takes no provider, so there the count is the upper bound min(E, k · tokens) per layer.
// With an expert cache (--moe-expert-cache-size, --gpu-memory) the cache's counters give the PCIe traffic per run.
// Token ids are a fixed pseudo-random sequence (the weights are what is measured, not the text).
// Routing: the model's own (random weights route almost uniformly, with no token-to-token locality), or a replayed
// routing trace (route_trace.h, --route-trace FILE): each phase rewinds it to row 0, so prefill replays rows
// 0..P-1 and decode replays each sequence's prompt and steps (trace rows in batch order; a trace made with
// n_seqs = B gives each decode sequence its own stream). Only the experts chosen change, never the arithmetic.
// With an expert cache the report adds the achieved H2D rate (PCIe bytes of the run over its time) beside the
// pinned-copy ceiling, and the prefetch counters.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace hlwq {

struct BenchOptions {
  Device device = Device::cpu;
  int batch = 1;                  // B decode sequences
  int64_t prompt_len = 512;       // P prefill tokens
  std::vector<int64_t> more_prompt_lens;  // further prefill lengths, measured the same way (prefill_more)
  int64_t gen_len = 32;           // G decode steps per timed run
  int64_t decode_prompt_len = 16;  // each decode sequence's prompt
  int warmup = 1, repeats = 3;
  int moe_expert_cache_size = 0;  // expert cache slots per layer (0: none); see LoadOptions
  int64_t gpu_memory = 0;         // CUDA device memory budget in bytes (0: none)
  PrefetchMode moe_prefetch = PrefetchMode::automatic;  // with a cache: prefetch the next layer's predicted experts
  int64_t moe_stream_min_tokens = kDefaultStreamMinTokens;  // CUDA, with a cache: whole-layer streaming from here
  int64_t max_batch_tokens = kDefaultMaxBatchTokens;  // the largest forward batch: prefill runs in chunks of it
  std::string route_trace;        // a routing trace file to replay ("" : the model's own routing)
  CpuExperts cpu_experts = CpuExperts::off;  // CUDA: routed experts on the CPU (see LoadOptions)
  int64_t n_cpu_moe = 0;
  uint64_t ceiling_bytes = uint64_t(1) << 30;  // CPU ceiling buffers
};

struct PhaseResult {
  double tok_s = 0, seconds = 0;    // median run
  double tok_s_min = 0, tok_s_max = 0;
  double weight_bytes = 0;          // weights read by one run
  double routed_experts = 0;        // distinct (layer, expert) reads of one run
  bool experts_counted = false;     // false: upper bound min(E, k · tokens) per layer and batch
  double weight_gbs = 0;            // weight_bytes / seconds
  double speed_of_light_tok_s = 0;  // tokens / (weight_bytes / read ceiling)
  double fraction = 0;              // tok_s / speed_of_light_tok_s
  // With an expert cache: expert bytes that crossed PCIe in one run (copied into slots or read in place) and the
  // hit rate; the speed of light then adds those bytes at the pinned host→device ceiling.
  double pcie_bytes = 0, hit_rate = -1;
  double h2d_gbs = 0;  // pcie_bytes / seconds: the achieved host→device rate
  double prefetched = 0, prefetch_hits = 0, prefetch_wasted = 0;  // per run
  double prefetching_share = -1;  // of the phase's steps, those that prefetched (−1: no step counted)
  double copy_ms = 0, copy_exposed_ms = 0;  // per run: expert copies' time, and the part not hidden by compute
  // With routed experts on the CPU (--cpu-experts, --n-cpu-moe): their share of the routed expert computations,
  // the weight bytes the CPU read from host memory and the CPU's time, per run (cpu_share −1: none).
  double cpu_share = -1, cpu_bytes = 0, cpu_ms = 0;
  // Prefill only, on a device with a tensor-core ceiling: the run's FLOPs (weight_traffic.h's multiply-accumulates
  // × 2) at that rate give a compute speed of light, the one that binds prefill.
  double flops = 0, compute_sol_tok_s = 0, compute_fraction = 0;
};

struct BenchResult {
  std::string model, device, device_name;
  int threads = 0;
  double read_ceiling_gbs = 0, copy_ceiling_gbs = 0, h2d_pinned_gbs = 0;  // h2d: CUDA only
  double tc_bf16_tflops = 0;  // CUDA only: the bf16 tensor-core rate of mma.sync (cuda_ceilings.h)
  std::string ceiling_method;
  double resident_weight_bytes = 0, dense_step_bytes = 0, expert_bytes = 0;
  double kv_bytes_per_token = 0, gdn_state_bytes_per_sequence = 0;
  int64_t n_layers = 0, n_experts = 0, n_experts_active = 0;
  BenchOptions opt;
  PhaseResult prefill, decode;
  std::vector<PhaseResult> prefill_more;  // [more_prompt_lens]
  double decode_weight_bytes_per_token = 0;
  std::string memory_plan;  // the backend's own account of where it placed what
  std::string routing;      // "model" or "trace FILE (…)"
};

BenchResult run_model_bench(const std::string& model_dir, const BenchOptions& opt);
nlohmann::json bench_result_json(const BenchResult& r);
std::string format_bench_result(const BenchResult& r);  // a short human-readable report

}  // namespace hlwq
