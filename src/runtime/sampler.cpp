// Sampler implementation. The sort behind top-p is the costly part for a 150k–250k vocabulary, so candidates
// are first narrowed by the cheap filters (top-k via nth_element, min-p by threshold) and top-p then sorts
// only a growing prefix. Filters are applied to the probabilities of the post-temperature distribution
// restricted to top-k; top-p and min-p decisions for a token depend only on more probable tokens and p_max,
// so applying them to the same probabilities in either order gives HF's sequential result.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace hlwq {

void sampler_apply_penalties(std::span<float> logits, std::span<const int32_t> history, float repetition_penalty,
                             float presence_penalty) {
  if (repetition_penalty == 1.0f && presence_penalty == 0.0f) return;
  HLWQ_CHECK(repetition_penalty > 0.0f, "sampler: repetition_penalty must be > 0, got {}", repetition_penalty);
  std::vector<int32_t> seen(history.begin(), history.end());
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  for (int32_t id : seen) {
    HLWQ_CHECK(id >= 0 && size_t(id) < logits.size(), "sampler: history token {} outside vocab of {}", id,
               logits.size());
    float& l = logits[size_t(id)];
    l = l > 0.0f ? l / repetition_penalty : l * repetition_penalty;
    l -= presence_penalty;
  }
}

int32_t sampler_argmax(std::span<const float> logits) {
  HLWQ_CHECK(!logits.empty(), "sampler: empty logits");
  // NaN or +Inf would otherwise be "sampled" as an ordinary token (NaN compares false, +Inf always wins); -Inf is
  // a legitimate mask, as long as something is left.
  for (size_t i = 0; i < logits.size(); ++i)
    HLWQ_CHECK(!std::isnan(logits[i]) && logits[i] != INFINITY,
               "sampler: the logit of token {} is {}; the model produced non-finite logits (numerical overflow or a "
               "broken checkpoint), so nothing can be sampled", i, logits[i]);
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;  // strict: the first (lowest id) maximum wins
  HLWQ_CHECK(logits[best] != -INFINITY, "sampler: every logit is -inf; nothing can be sampled");
  return int32_t(best);
}

SamplerCandidates sampler_filter(std::span<const float> logits, const SamplerConfig& cfg) {
  HLWQ_CHECK(cfg.temperature > 0.0f, "sampler: sampler_filter needs temperature > 0, got {}", cfg.temperature);
  HLWQ_CHECK(cfg.top_p > 0.0f && cfg.top_p <= 1.0f, "sampler: top_p must be in (0, 1], got {}", cfg.top_p);
  HLWQ_CHECK(cfg.min_p >= 0.0f && cfg.min_p <= 1.0f, "sampler: min_p must be in [0, 1], got {}", cfg.min_p);
  HLWQ_CHECK(cfg.top_k >= 0, "sampler: top_k must be >= 0, got {}", cfg.top_k);
  const size_t n = logits.size();
  const int32_t best = sampler_argmax(logits);
  const float max_logit = logits[size_t(best)];
  HLWQ_CHECK(std::isfinite(max_logit), "sampler: largest logit is {}", max_logit);
  // Descending logit, then ascending id: one total order used for every ranking below.
  auto before = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] != logits[size_t(b)] ? logits[size_t(a)] > logits[size_t(b)] : a < b;
  };

  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  if (cfg.top_k > 0 && size_t(cfg.top_k) < n) {
    std::nth_element(ids.begin(), ids.begin() + (cfg.top_k - 1), ids.end(), before);
    const float kth = logits[size_t(ids[size_t(cfg.top_k - 1)])];
    // HF removes only logits strictly below the k-th value, so ties at the boundary survive.
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t i) { return logits[size_t(i)] < kth; }),
              ids.end());
  }

  // Unnormalised probabilities relative to the max (p_max == 1), at temperature T.
  const double inv_t = 1.0 / double(cfg.temperature);
  auto weight = [&](int32_t i) { return std::exp((double(logits[size_t(i)]) - max_logit) * inv_t); };
  double total = 0.0;
  for (int32_t i : ids) total += weight(i);

  if (cfg.min_p > 0.0f) {
    const double thresh = cfg.min_p;  // p_i / p_max >= min_p
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t i) { return weight(i) < thresh; }), ids.end());
  }

  size_t keep = ids.size();
  if (cfg.top_p < 1.0f) {
    // Sort a prefix big enough to reach the mass top_p; grow it only when the mass lives in a long tail.
    const double need = double(cfg.top_p) * total;
    size_t sorted = std::min<size_t>(ids.size(), 1024);
    for (;;) {
      std::partial_sort(ids.begin(), ids.begin() + sorted, ids.end(), before);
      double cum = 0.0;
      keep = 0;
      while (keep < sorted && cum < need) cum += weight(ids[keep++]);  // token kept iff mass before it < top_p
      if (cum >= need || sorted == ids.size()) break;
      sorted = std::min(ids.size(), sorted * 8);
    }
  } else {
    std::sort(ids.begin(), ids.end(), before);
  }
  ids.resize(std::max<size_t>(keep, 1));

  SamplerCandidates out;
  out.ids = std::move(ids);
  out.probs.resize(out.ids.size());
  double kept = 0.0;
  for (int32_t i : out.ids) kept += weight(i);
  for (size_t k = 0; k < out.ids.size(); ++k) out.probs[k] = float(weight(out.ids[k]) / kept);
  return out;
}

Sampler::Sampler(const SamplerConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {
  HLWQ_CHECK(cfg.temperature >= 0.0f && std::isfinite(cfg.temperature), "sampler: temperature must be >= 0, got {}",
             cfg.temperature);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  return sample_drawn(logits, history, cfg_.temperature == 0.0f ? 0.0 : draw());
}

std::optional<RowSampling> Sampler::device_choice() {
  if (cfg_.repetition_penalty != 1.0f || cfg_.presence_penalty != 0.0f) return std::nullopt;
  if (cfg_.temperature == 0.0f) return RowSampling{};
  if (cfg_.top_k < 1 || cfg_.top_k > 1024) return std::nullopt;
  return RowSampling{cfg_.temperature, cfg_.top_k, cfg_.top_p, cfg_.min_p, draw()};
}

int32_t Sampler::sample_drawn(std::span<const float> logits, std::span<const int32_t> history, double u) {
  work_.assign(logits.begin(), logits.end());
  sampler_apply_penalties(work_, history, cfg_.repetition_penalty, cfg_.presence_penalty);
  if (cfg_.temperature == 0.0f) return sampler_argmax(work_);
  SamplerCandidates c = sampler_filter(work_, cfg_);
  // u: 53 random bits in [0, 1) (draw()), done by hand because std::uniform_real_distribution is not specified
  // bit-exactly across standard libraries and we promise seed-reproducible output.
  double cum = 0.0;
  for (size_t k = 0; k < c.ids.size(); ++k) {
    cum += c.probs[k];
    if (u < cum) return c.ids[k];
  }
  return c.ids.back();  // u landed in the rounding slack of the cumulative sum
}

}  // namespace hlwq
