// hlwq_bench_expert_cache: simulates the GPU expert cache policy (src/moe/expert_cache) on Qwen3.6-35B-A3B's
// MoE shape (40 MoE layers, 256 routed experts, top-8, one CT-INT4 expert = 1,622,016 bytes, SPEC §5) for a
// seeded synthetic decode trace (batch 1) whose routing is Zipf-skewed: in each layer, rank r of a per-layer
// random permutation of the experts is picked with weight 1 / (r + 1)^s, top-8 drawn without replacement.
// For each slot count N it prints, as one markdown table, the hit rate and MB copied host→device per token under
// LRU and LFRU (the copy time that takes at SPEC §8's pinned ceiling of 53.0 GB/s), and the fraction of layer
// steps in which the seed's eviction — LFRU that may evict a slot the same step already placed or hit — would
// have run an expert with another expert's weights. Statistics exclude the first --warmup tokens.
// Nothing here is timed: the numbers depend only on the policy code, the trace options and the seed.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "moe/expert_cache.h"

namespace hlwq {
namespace {

// Qwen3.6-35B-A3B (SPEC §1, §5).
constexpr int kMoeLayers = 40, kExperts = 256, kTopK = 8;
constexpr int64_t kBytesPerExpert = 1'622'016;
constexpr double kPinnedH2dGBps = 53.0;  // SPEC §8: pinned host→device on the reference H100

struct Options {
  int tokens = 4000;
  int warmup = 500;
  double zipf_s = 1.0;
  uint32_t seed = 1;
  int half_life = 256;
  std::string commit;
};

// trace[token][layer] = the token's top-8 experts of that layer, in routing order.
using Trace = std::vector<std::vector<std::vector<int32_t>>>;

Trace make_trace(const Options& o) {
  std::mt19937 rng(o.seed);
  std::vector<std::vector<int32_t>> perm(kMoeLayers, std::vector<int32_t>(kExperts));
  for (auto& p : perm) {
    for (int e = 0; e < kExperts; ++e) p[size_t(e)] = e;
    std::shuffle(p.begin(), p.end(), rng);
  }
  std::vector<double> cdf(kExperts);
  double acc = 0;
  for (int r = 0; r < kExperts; ++r) cdf[size_t(r)] = acc += std::pow(double(r + 1), -o.zipf_s);
  std::uniform_real_distribution<double> u(0, acc);
  Trace trace(size_t(o.tokens), std::vector<std::vector<int32_t>>(kMoeLayers));
  for (auto& token : trace) {
    for (int l = 0; l < kMoeLayers; ++l) {
      auto& experts = token[size_t(l)];
      while (int(experts.size()) < kTopK) {  // rejection keeps the k draws distinct
        const auto r = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
        const int32_t e = perm[size_t(l)][size_t(std::min<ptrdiff_t>(r, kExperts - 1))];
        if (std::find(experts.begin(), experts.end(), e) == experts.end()) experts.push_back(e);
      }
    }
  }
  return trace;
}

struct PolicyResult {
  double hit_rate = 0;
  double mb_per_token = 0;
};

PolicyResult run_policy(const Trace& trace, const Options& o, int n_slots, ExpertEvictionPolicy policy) {
  ExpertCacheConfig cfg;
  cfg.n_layers = kMoeLayers;
  cfg.n_experts = kExperts;
  cfg.n_slots = n_slots;
  cfg.n_stream_buffers = kTopK;
  cfg.bytes_per_expert = kBytesPerExpert;
  cfg.policy = policy;
  cfg.lfru_half_life_steps = o.half_life;
  ExpertCache cache(cfg);
  ExpertCacheStats at_warm;
  for (size_t t = 0; t < trace.size(); ++t) {
    if (t == size_t(o.warmup)) at_warm = cache.stats();
    for (int l = 0; l < kMoeLayers; ++l) {
      cache.begin_step(l, trace[t][size_t(l)]);
      cache.end_step(l);
    }
  }
  const ExpertCacheStats& end = cache.stats();
  const int64_t lookups = end.lookups() - at_warm.lookups();
  const double tokens = double(o.tokens - o.warmup);
  return {double(end.hits - at_warm.hits) / double(lookups),
          double(end.bytes_copied - at_warm.bytes_copied) / tokens / 1e6};
}

// The seed's policy: misses handled one at a time, victim = lowest (aged use count, last use) over ALL slots,
// so a miss may take the slot of an expert the same step already hit or loaded. Same counters and aging as
// hlwq's kLfru, no admission. Returns the fraction of (token, layer) steps that end with some needed expert no
// longer in the slot it was placed in, i.e. that compute with wrong weights.
double seed_wrong_step_fraction(const Trace& trace, const Options& o, int n_slots) {
  int64_t wrong = 0, steps = 0;
  for (int l = 0; l < kMoeLayers; ++l) {
    std::vector<int32_t> slot(size_t(n_slots), -1), where(kExperts, -1);
    std::vector<uint32_t> uses(kExperts, 0);
    std::vector<uint64_t> used(size_t(n_slots), 0);
    uint64_t tick = 0;
    auto victim_key = [&](int s) {  // empty slots first, then (use count, last use)
      return slot[size_t(s)] < 0 ? std::pair<int64_t, uint64_t>{-1, 0}
                                 : std::pair<int64_t, uint64_t>{uses[size_t(slot[size_t(s)])], used[size_t(s)]};
    };
    for (size_t t = 0; t < trace.size(); ++t) {
      const auto& experts = trace[t][size_t(l)];
      if ((t + 1) % size_t(o.half_life) == 0)
        for (uint32_t& u : uses) u >>= 1;
      for (int32_t e : experts) ++uses[size_t(e)];
      std::vector<int> placed;
      for (int32_t e : experts) {
        ++tick;
        int s = where[size_t(e)];
        if (s < 0) {
          s = 0;
          for (int c = 1; c < n_slots; ++c)
            if (victim_key(c) < victim_key(s)) s = c;  // the bug: slots this step placed or hit compete too
          if (slot[size_t(s)] >= 0) where[size_t(slot[size_t(s)])] = -1;
          slot[size_t(s)] = e;
          where[size_t(e)] = s;
        }
        used[size_t(s)] = tick;
        placed.push_back(s);
      }
      if (t < size_t(o.warmup)) continue;
      ++steps;
      for (size_t i = 0; i < experts.size(); ++i)
        if (slot[size_t(placed[i])] != experts[i]) {
          ++wrong;
          break;
        }
    }
  }
  return double(wrong) / double(steps);
}

std::string git_commit() {
  std::string out;
  const std::string cmd = fmt::format("git -C '{}' describe --always --dirty 2>/dev/null", HLWQ_SOURCE_DIR);
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[128];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

int run(const Options& o) {
  const Trace trace = make_trace(o);
  const double ms_per_mb = 1e3 / (kPinnedH2dGBps * 1e3);
  fmt::print("Expert cache simulation, Qwen3.6-35B-A3B shape: {} MoE layers x {} experts, top-{}, {} B/expert "
             "(CT-INT4); decode batch 1; Zipf s = {} over a per-layer random expert order; {} tokens, first {} "
             "excluded; seed {}; LFRU half-life {} steps; commit {}.\n\n",
             kMoeLayers, kExperts, kTopK, kBytesPerExpert, o.zipf_s, o.tokens, o.warmup, o.seed, o.half_life,
             o.commit.empty() ? git_commit() : o.commit);
  fmt::print("| N slots/layer | GPU cache GB | LRU hit % | LRU MB/token | LFRU hit % | LFRU MB/token | LFRU copy "
             "ms/token @ {} GB/s | seed eviction: steps with wrong weights % |\n",
             kPinnedH2dGBps);
  fmt::print("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int n : {1, 2, 4, 8, 16, 32, 64, 128}) {
    const PolicyResult lru = run_policy(trace, o, n, ExpertEvictionPolicy::kLru);
    const PolicyResult lfru = run_policy(trace, o, n, ExpertEvictionPolicy::kLfru);
    const double seed_wrong = seed_wrong_step_fraction(trace, o, n);
    fmt::print("| {} | {:.2f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.2f} | {:.1f} |\n", n,
               double(n) * kMoeLayers * double(kBytesPerExpert) / 1e9, 100 * lru.hit_rate, lru.mb_per_token,
               100 * lfru.hit_rate, lfru.mb_per_token, lfru.mb_per_token * ms_per_mb, 100 * seed_wrong);
  }
  return 0;
}

}  // namespace
}  // namespace hlwq

int main(int argc, char** argv) {
  hlwq::Options o;
  CLI::App app{"Simulate the MoE expert cache policy on a Zipf-skewed routing trace (Qwen3.6-35B-A3B shape)"};
  app.add_option("--tokens", o.tokens, "decode tokens in the trace")->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "leading tokens excluded from the statistics")->check(CLI::NonNegativeNumber);
  app.add_option("--zipf", o.zipf_s, "Zipf exponent s of expert popularity (0 = uniform)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "trace seed");
  app.add_option("--half-life", o.half_life, "LFRU use-count half-life in steps")->check(CLI::PositiveNumber);
  app.add_option("--commit", o.commit, "commit to report (default: `git describe --always --dirty` of the sources)");
  CLI11_PARSE(app, argc, argv);
  if (o.warmup >= o.tokens) {
    fmt::print(stderr, "error: --warmup ({}) must be below --tokens ({})\n", o.warmup, o.tokens);
    return 1;
  }
  try {
    return hlwq::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
