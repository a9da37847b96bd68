// Sampler and stop-condition tests on small hand-made logits: each filter in isolation, HF penalty
// semantics, greedy tie-breaking and seed independence, seeded determinism, and the sampled frequencies.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include "core/error.h"
#include "runtime/sampler.h"
#include "runtime/stop_condition.h"
#include "test_paths.h"

namespace hlwq {
namespace {

std::vector<float> log_probs(std::initializer_list<float> p) {
  std::vector<float> out;
  for (float x : p) out.push_back(std::log(x));
  return out;
}

SamplerConfig cfg_with(float t = 1.0f) {
  SamplerConfig c;
  c.temperature = t;
  return c;
}

TEST(Sampler, RepetitionPenaltyHfSemanticsAndPresence) {
  std::vector<float> l{2.0f, -2.0f, 1.0f, 0.5f};
  std::vector<int32_t> hist{0, 1, 1};  // repeated ids are penalised once
  sampler_apply_penalties(l, hist, 2.0f, 0.0f);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.5f}));
  sampler_apply_penalties(l, hist, 1.0f, 0.5f);
  EXPECT_EQ(l, (std::vector<float>{0.5f, -4.5f, 1.0f, 0.5f}));
  EXPECT_THROW(sampler_apply_penalties(l, std::vector<int32_t>{4}, 2.0f, 0.0f), Error);
}

TEST(Sampler, GreedyTiesLowestIdAndIgnoresSeed) {
  std::vector<float> l{1.0f, 3.0f, 3.0f, 2.0f};
  EXPECT_EQ(sampler_argmax(l), 1);
  for (uint64_t seed : {1u, 2u, 99u}) {
    SamplerConfig c = cfg_with(0.0f);
    c.seed = seed;
    c.top_k = 1;
    Sampler s(c);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l, {}), 1);
  }
  // Greedy sees the penalised logits: after penalising 1 and 2, id 3 wins.
  SamplerConfig c = cfg_with(0.0f);
  c.repetition_penalty = 2.0f;
  Sampler s(c);
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{1, 2}), 3);
}

TEST(Sampler, TopKKeepsBoundaryTies) {
  SamplerConfig c = cfg_with();
  c.top_k = 2;
  EXPECT_EQ(sampler_filter(std::vector<float>{1, 4, 3, 2}, c).ids, (std::vector<int32_t>{1, 2}));
  c.top_k = 1;
  EXPECT_EQ(sampler_filter(std::vector<float>{1, 3, 3, 2}, c).ids, (std::vector<int32_t>{1, 2}));
}

TEST(Sampler, TopPSmallestPrefixReachingMass) {
  std::vector<float> l = log_probs({0.15f, 0.5f, 0.05f, 0.3f});
  SamplerConfig c = cfg_with();
  c.top_p = 0.75f;
  SamplerCandidates r = sampler_filter(l, c);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(r.probs[0], 0.5f / 0.8f, 1e-6);
  c.top_p = 0.85f;
  EXPECT_EQ(sampler_filter(l, c).ids, (std::vector<int32_t>{1, 3, 0}));
  c.top_p = 0.1f;  // the top token alone always survives
  EXPECT_EQ(sampler_filter(l, c).ids, (std::vector<int32_t>{1}));
}

TEST(Sampler, MinPRelativeToMax) {
  std::vector<float> l = log_probs({0.15f, 0.5f, 0.05f, 0.3f});
  SamplerConfig c = cfg_with();
  c.min_p = 0.2f;  // threshold 0.1
  EXPECT_EQ(sampler_filter(l, c).ids, (std::vector<int32_t>{1, 3, 0}));
  c.min_p = 0.7f;  // threshold 0.35
  EXPECT_EQ(sampler_filter(l, c).ids, (std::vector<int32_t>{1}));
}

TEST(Sampler, TemperatureFlattens) {
  std::vector<float> l{0.0f, 2.0f};
  SamplerCandidates r = sampler_filter(l, cfg_with(2.0f));
  EXPECT_NEAR(r.probs[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);  // softmax(l / 2)
  EXPECT_THROW(Sampler(cfg_with(-1.0f)), Error);
}

TEST(Sampler, SeededDeterminismAndFrequencies) {
  std::vector<float> l = log_probs({0.5f, 0.3f, 0.2f});
  auto run = [&](uint64_t seed, int n) {
    SamplerConfig c = cfg_with();
    c.seed = seed;
    Sampler s(c);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(s.sample(l, {}));
    return out;
  };
  EXPECT_EQ(run(42, 64), run(42, 64));
  EXPECT_NE(run(42, 64), run(43, 64));
  std::vector<int32_t> draws = run(7, 20000);
  std::vector<double> freq(3);
  for (int32_t id : draws) freq[size_t(id)] += 1.0 / 20000;
  EXPECT_NEAR(freq[0], 0.5, 0.02);
  EXPECT_NEAR(freq[1], 0.3, 0.02);
  EXPECT_NEAR(freq[2], 0.2, 0.02);
}

TEST(Sampler, FiltersCompose) {
  // top-k 3 drops id 4; top-p 0.9 over the full distribution then drops id 3; min-p keeps the rest.
  std::vector<float> l = log_probs({0.4f, 0.3f, 0.2f, 0.06f, 0.04f});
  SamplerConfig c = cfg_with();
  c.top_k = 4;
  c.top_p = 0.85f;
  c.min_p = 0.1f;
  SamplerCandidates r = sampler_filter(l, c);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1, 2}));
  float sum = 0;
  for (float p : r.probs) sum += p;
  EXPECT_NEAR(sum, 1.0f, 1e-6);
}

TEST(StopChecker, EosAndStopStrings) {
  StopChecker sc({7, 9}, {"<|im_end|>", "STOP"});
  EXPECT_TRUE(sc.is_eos(9));
  EXPECT_FALSE(sc.is_eos(8));
  EXPECT_EQ(sc.push("Hello <|im"), "Hello ");  // "<|im" might start a stop string
  EXPECT_EQ(sc.push("_e"), "");
  EXPECT_EQ(sc.push("x"), "<|im_ex");  // it did not
  EXPECT_EQ(sc.push(" ST"), " ");
  EXPECT_EQ(sc.push("OP and more"), "");
  EXPECT_TRUE(sc.stopped());
  EXPECT_EQ(sc.push("later"), "");
  EXPECT_EQ(sc.flush(), "");

  StopChecker sc2({}, {"end"});
  EXPECT_EQ(sc2.push("the e"), "the ");
  EXPECT_EQ(sc2.flush(), "e");  // generation ended without a stop string: release the held tail
  StopChecker sc3({}, {"bc", "abcd"});
  EXPECT_EQ(sc3.push("xabcd"), "x");  // the earliest match ("abcd" at 1) wins over "bc" at 2
}

// Issue 11: NaN or +Inf logits used to be sampled as ordinary tokens; they are an error naming the cause, in
// greedy and sampled mode alike. -Inf is a mask and stays allowed while something finite is left.
TEST(Sampler, NonFiniteLogitsAreAnError) {
  for (float bad : {std::nanf(""), INFINITY}) {
    std::vector<float> logits = {0.5f, bad, 1.0f};
    for (float temp : {0.0f, 1.0f}) {
      SamplerConfig cfg;
      cfg.temperature = temp;
      Sampler s(cfg);
      try {
        s.sample(logits, {});
        ADD_FAILURE() << "no error for " << bad << " at temperature " << temp;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("the logit of token 1 is"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("non-finite logits"), std::string::npos) << e.what();
      }
    }
  }
  std::vector<float> masked = {-INFINITY, 2.0f, -INFINITY};
  EXPECT_EQ(Sampler(SamplerConfig{}).sample(masked, {}), 1);
  std::vector<float> all_masked = {-INFINITY, -INFINITY};
  EXPECT_THROW(sampler_argmax(all_masked), Error);
}

// The draw of a device choice is the draw sample() takes: a sampler that hands every choice to the device (and,
// here, makes it itself with sample_drawn) chooses the same tokens as one that samples on the host, seed for seed.
TEST(Sampler, DeviceChoiceTakesTheSameDrawsAsSample) {
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> dist(-4.f, 4.f);
  SamplerConfig cfg;
  cfg.temperature = 0.9f, cfg.top_k = 30, cfg.top_p = 0.9f, cfg.min_p = 0.02f, cfg.seed = 11;
  Sampler host(cfg), dev(cfg);
  for (int step = 0; step < 50; ++step) {
    std::vector<float> l(500);
    for (auto& x : l) x = dist(rng);
    const auto how = dev.device_choice();
    ASSERT_TRUE(how.has_value());
    EXPECT_EQ(how->top_k, 30);
    EXPECT_EQ(dev.sample_drawn(l, {}, how->u), host.sample(l, {})) << "step " << step;
  }
  cfg.temperature = 0.f;  // greedy: a device choice that draws nothing
  Sampler g(cfg);
  ASSERT_TRUE(g.device_choice().has_value());
  EXPECT_EQ(g.device_choice()->temperature, 0.f);
  cfg.temperature = 1.f, cfg.top_k = 0;  // the whole vocabulary, and penalties: host only
  EXPECT_FALSE(Sampler(cfg).device_choice().has_value());
  cfg.top_k = 10, cfg.repetition_penalty = 1.1f;
  EXPECT_FALSE(Sampler(cfg).device_choice().has_value());
}

// generation_config.json was the one JSON file read without the depth limit (100,000 levels crashed).
TEST(StopChecker, DeeplyNestedGenerationConfigIsRefused) {
  std::filesystem::path dir = test::scratch_dir("eos_deep");
  std::ofstream(dir / "generation_config.json") << std::string(100000, '[') << std::string(100000, ']');
  try {
    load_eos_ids(dir);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nests deeper than"), std::string::npos) << e.what();
  }
}

TEST(StopChecker, LoadEosIdsFromConfigs) {
  std::filesystem::path dir = test::scratch_dir("eos_ids");
  std::ofstream(dir / "config.json") << R"({"text_config": {"eos_token_id": [248044, 248046]}})";
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": 248046, "do_sample": true})";
  EXPECT_EQ(load_eos_ids(dir), (std::vector<int32_t>{248044, 248046}));
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "oops"})";
  EXPECT_THROW(load_eos_ids(dir), Error);
}

}  // namespace
}  // namespace hlwq
