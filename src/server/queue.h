// The one place of the server where threads meet, and so the only file with locks (DESIGN: "all locking lives
// here"). HTTP handler threads submit Jobs to the RequestQueue and read their results from the Job's Channel; the
// engine thread takes Jobs, runs them and pushes StreamEvents into the Channels. Metrics (counters, histograms,
// gauges) are updated and rendered under the queue's lock as well.
// Invariants: the waiting queue never holds more than max_waiting jobs (submit refuses beyond it, and while
// draining); a Channel delivers its events in order and ends with exactly one finish or error event.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "moe/expert_cache.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"

namespace hlwq::server {

using Clock = std::chrono::steady_clock;

// What the engine needs to run one request: already tokenized, every value checked.
struct GenRequest {
  std::vector<int32_t> prompt;  // [n_prompt] token ids
  int64_t max_tokens = 16;      // ≥ 1; prompt + max_tokens ≤ the server's max model length
  SamplerConfig sampler;
  std::vector<std::string> stop;
  int32_t top_logprobs = -1;    // −1: no logprobs; 0..20: the sampled token's logprob and this many alternatives
};

struct TokenLogprob {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // most likely first
};

struct StreamEvent {
  enum class Kind { delta, finish, error } kind = Kind::delta;
  std::string text;                   // delta: newly released text (may be empty when only logprobs come)
  std::vector<TokenLogprob> logprobs; // delta: one entry per token sampled in this step (when requested)
  FinishReason finish = FinishReason::length;  // finish
  int64_t prompt_tokens = 0, completion_tokens = 0;  // finish
  std::string error;                  // error: why the request failed in the engine
};

// One request's stream of events, from the engine thread to the HTTP thread that serves it.
class Channel {
 public:
  void push(StreamEvent ev);
  // The next event, or nullopt when none arrived within `timeout`.
  std::optional<StreamEvent> next(std::chrono::milliseconds timeout);
  // The client went away: the engine frees the request's sequence at its next step.
  void cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  bool cancelled_ = false;
};

struct Job {
  GenRequest req;
  std::shared_ptr<Channel> channel;
  Clock::time_point arrived;
};

// Histogram with fixed bucket bounds (seconds), Prometheus style (cumulative when rendered).
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // [bounds.size() + 1], the last is +Inf
  double sum = 0;
  uint64_t n = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v);
};

class RequestQueue {
 public:
  RequestQueue(size_t max_waiting, int64_t kv_blocks_total);

  enum class Submit { ok, full, draining };
  Submit submit(Job job);

  // Engine side. take() returns up to `max` waiting jobs; when `block` it waits until there is one, or until
  // the queue is shutting down with nothing left (then returns empty).
  std::vector<Job> take(size_t max, bool block);
  // True once drain() was called and no job waits (the engine stops when it also runs none).
  bool finished() const;
  void set_engine_state(int64_t running, int64_t kv_blocks_used, int64_t kv_blocks_cached, int64_t cached_seqs,
                        int64_t snapshots);
  void set_expert_cache(const ExpertCacheStats& s);  // the model's expert-cache counters (offload on)
  // One per admitted request: prompt tokens, those reused from a cached sequence or snapshot, and of those the
  // ones that came from a snapshot.
  void record_prefix(int64_t prompt_tokens, int64_t reused_tokens, int64_t snapshot_tokens);
  void record_token(bool first, double seconds);  // TTFT (first) or inter-token latency
  void record_finish(int64_t prompt_tokens, int64_t completion_tokens);

  // Shutdown: new submits are refused; waits until no job waits or runs.
  void drain();
  void wait_idle();

  // HTTP side.
  void record_response(int status);  // one per /v1 request, by HTTP status
  std::string render_metrics() const;  // Prometheus text exposition

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;       // jobs arrive / drain starts
  std::condition_variable idle_cv_;  // running and waiting reach 0
  std::deque<Job> waiting_;
  size_t max_waiting_;
  bool draining_ = false;
  int64_t running_ = 0, kv_used_ = 0, kv_total_, kv_cached_ = 0, cached_seqs_ = 0, snapshots_ = 0;
  std::optional<ExpertCacheStats> expert_cache_;
  uint64_t prefix_queries_ = 0, prefix_hits_ = 0;  // prompt tokens looked up / found in the prefix cache
  uint64_t snapshot_hits_ = 0;                      // of prefix_hits_, those resumed from a snapshot
  std::vector<std::pair<int, uint64_t>> by_status_;  // (HTTP status, count), in first-seen order
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0;
  Histogram ttft_, itl_;
};

}  // namespace hlwq::server
