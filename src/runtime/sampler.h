// Token sampler: fp32 logits [vocab] + token history -> next token id.
// Pipeline (HF generate order): repetition penalty (HF: positive logits of seen tokens divided, negative
// multiplied) -> presence penalty (subtract once per distinct seen token) -> temperature -> top-k -> top-p ->
// min-p -> draw. temperature == 0 is greedy argmax over the penalised logits (ties -> lowest id) and never
// touches the RNG, so greedy output is independent of the seed. The RNG (mt19937_64) lives in the Sampler,
// so one Sampler per sequence: same seed + same inputs -> same tokens.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace hlwq {

struct SamplerConfig {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 = off; ties with the k-th logit are kept (as HF does)
  float top_p = 1.0f;               // 1 = off; keep the smallest prefix (by prob) whose mass reaches top_p
  float min_p = 0.0f;               // 0 = off; keep p >= min_p * p_max
  float repetition_penalty = 1.0f;  // 1 = off
  float presence_penalty = 0.0f;    // 0 = off
  uint64_t seed = 0;
};

// Tokens left after the filters, most probable first (ties: lower id first); probs sum to 1.
struct SamplerCandidates {
  std::vector<int32_t> ids;
  std::vector<float> probs;
};

// In-place penalties on logits [vocab] for the distinct ids in history (ids must be < vocab).
void sampler_apply_penalties(std::span<float> logits, std::span<const int32_t> history, float repetition_penalty,
                             float presence_penalty);
// Greedy choice: index of the largest logit, lowest index on ties.
int32_t sampler_argmax(std::span<const float> logits);
// Temperature (> 0) + top-k + top-p + min-p over penalised logits.
SamplerCandidates sampler_filter(std::span<const float> logits, const SamplerConfig& cfg);

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& cfg);
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  // Token choice on the backend (backend.h RowSampling): when this configuration can run there — no penalties,
  // and greedy or top_k in [1, 1024] — the row's RowSampling, with the draw u taken from this sampler's RNG
  // exactly as sample() takes it (greedy draws nothing), so a seed chooses the same tokens on either side;
  // otherwise nothing, and the RNG is untouched.
  std::optional<RowSampling> device_choice();
  // The host's choice with a draw already taken (a row the backend gave back after device_choice()).
  int32_t sample_drawn(std::span<const float> logits, std::span<const int32_t> history, double u);
  void reseed(uint64_t seed) { rng_.seed(seed); }
  const SamplerConfig& config() const { return cfg_; }

 private:
  double draw() { return double(rng_() >> 11) * 0x1.0p-53; }

  SamplerConfig cfg_;
  std::mt19937_64 rng_;
  std::vector<float> work_;  // [vocab] penalised logits, reused between calls
};

}  // namespace hlwq
