// RouteTrace: a synthetic MoE routing trace for benchmarks (issue 8 item 5). Random weights route almost uniformly
// and with no token-to-token locality, which understates every expert cache; a trace says instead which experts
// each token chooses in each MoE layer, with the skew and reuse measured on real Qwen MoE models, and `hlwq bench
// --route-trace FILE` replays it: only the ids change, never the arithmetic (the backend keeps the model's own
// renormalized top-k weights and gives the trace's j-th expert of a token the model's j-th largest weight).
//
// Model (generate_route_trace): per layer a fixed random permutation of the experts ranks their popularity; a
// token keeps each of its sequence's previous-step experts of that layer with probability `reuse`, then fills the
// rest of its k choices by drawing ranks from a Zipf law (weight of rank r ∝ 1/(r+1)^zipf) over that permutation,
// redrawing repeats. fit_route_trace chooses (zipf, reuse) by simulating the LRU policy of src/moe/expert_cache so
// that a cache of N of E experts per layer hits the published rates at the same fraction N/E: llama.cpp PR #27861
// (https://github.com/ggml-org/llama.cpp/pull/27861) measured on Qwen3-Next (512 experts, top-10) that a per-layer
// LRU of 64 would hit ~67 % and of 128 ~81 %; for Qwen3.6 (256, top-8) we take the same fractions, 12.5 % → 67 %
// and 25 % → 81 % (N = 32 and 64) — a scaling by N/E, an assumption, not a measurement.
// Caveat: two parameters fit the two LRU points, but for 256 experts top-8 the fit lands at mostly static skew
// (zipf ≈ 1.34, reuse ≈ 0.03, tests/moe/test_route_trace.cpp prints it), while the same PR reports little static
// skew (a top-32 list learned on half the workload covers ~10 % of the other half, uniform 6.2 %) and strong
// temporal locality. So the trace reproduces LRU hit rates (what the cache benchmarks measure) but flatters
// frequency-based policies and static pinning; a drifting popularity ranking would be the next parameter.
//
// File format (little-endian, written atomically):
//   offset  0  char[8]  magic "HLWQRTR1"
//           8  u32 ×6   n_layers (MoE layers), n_experts, top_k, n_seqs, n_steps, reserved (0)
//          32  f64 ×2   zipf, reuse  (the generator's parameters; informational)
//          48  u64      seed
//          56  u16      ids [n_steps][n_seqs][n_layers][top_k], distinct within each [top_k] row, each < n_experts
// Token row r = step · n_seqs + seq. A backend replaying a trace takes the next T rows for each batch of T tokens
// (batch row t ← trace row cursor + t, wrapping at the end), so decode of B = n_seqs sequences stepping together
// replays each sequence's own stream, and a prefill of one sequence replays a trace made with n_seqs = 1.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace hlwq {

struct RouteTraceParams {
  int n_layers = 40, n_experts = 256, top_k = 8;
  int n_seqs = 1, n_steps = 4096;
  double zipf = 0.0;   // skew of the per-layer popularity law (0: uniform)
  double reuse = 0.0;  // probability of keeping each of the previous step's experts
  uint64_t seed = 1;
};

struct RouteTrace {
  RouteTraceParams params;
  std::vector<uint16_t> ids;  // [n_steps][n_seqs][n_layers][top_k]

  int64_t rows() const { return int64_t(params.n_steps) * params.n_seqs; }
  // The k ids of token row r in layer l.
  std::span<const uint16_t> row(int64_t r, int layer) const {
    const int64_t k = params.top_k;
    return {ids.data() + (r * params.n_layers + layer) * k, size_t(k)};
  }
  std::string describe() const;  // "256 experts top-8, 40 layers, 1 × 4096 rows, zipf 0.80, reuse 0.50, seed 1"
};

RouteTrace generate_route_trace(const RouteTraceParams& p);

// Hit rate of the src/moe/expert_cache LRU policy with n_slots per layer replaying the trace: each step's batch is
// the union of its n_seqs rows per layer (as a backend groups a batch). Counts every lookup (a cold cache too).
double simulate_lru_hit_rate(const RouteTrace& t, int n_slots);

// One target point: a cache of `fraction` · n_experts slots per layer hits `hit_rate`.
struct RouteTraceTarget {
  double fraction = 0, hit_rate = 0;
};
// The published points above (PR #27861): {0.125, 0.67}, {0.25, 0.81}.
std::vector<RouteTraceTarget> default_route_trace_targets();

struct RouteTraceFit {
  double zipf = 0, reuse = 0;
  std::vector<double> achieved;  // hit rate at each target in the fitting simulation
};
// (zipf, reuse) for n_experts, top_k whose simulated LRU hit rates match two targets (least squares over a grid of
// reuse values, zipf bisected to the first target at each; a few seconds). Deterministic.
RouteTraceFit fit_route_trace(int n_experts, int top_k, const std::vector<RouteTraceTarget>& targets);

void write_route_trace(const std::string& path, const RouteTrace& t);  // atomic (temporary file, then rename)
// Reads and validates a trace file; errors name the file, the field, expected and actual.
RouteTrace read_route_trace(const std::string& path);

// The replay position of a backend: takes T token rows per batch, wrapping at the end of the trace.
class RouteTraceCursor {
 public:
  explicit RouteTraceCursor(std::shared_ptr<const RouteTrace> t) : t_(std::move(t)) {}
  // out [n_layers][T][top_k] (layer-major, as the backends consume one layer at a time) ← rows pos .. pos + T − 1.
  void next(int64_t T, std::span<int32_t> out);
  void rewind() { pos_ = 0; }
  int64_t position() const { return pos_; }
  const RouteTrace& trace() const { return *t_; }

 private:
  std::shared_ptr<const RouteTrace> t_;
  int64_t pos_ = 0;
};

}  // namespace hlwq
