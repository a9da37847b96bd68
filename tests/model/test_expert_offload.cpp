// The expert cache behind the ExpertProvider seam: for every cache size — one slot (an eviction every step), fewer
// than top-k (the rest streamed), top-k, 2·top-k, all — and with prefetching on or off, a prefill and greedy
// decode give logits bit-identical to the run without a cache, since the same kernels run on the same bytes
// (copied into slots). The counters add up: every lookup is a hit, a miss or a stream, and bytes copied match.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/model.h"
#include "test_paths.h"

namespace hlwq {
namespace {

std::filesystem::path tiny_moe_dev() { return test::source_dir() / "models" / "tiny-moe-dev"; }

struct RunOut {
  std::vector<float> logits;  // [steps, V]: the prompt's last token, then each greedy step
  std::vector<int32_t> tokens;
};

RunOut run_greedy(Model& m, int steps) {
  const int64_t V = m.config().vocab_size;
  std::vector<int32_t> prompt(20);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919 + 11) % size_t(V));
  Sequence s = m.new_sequence(64);
  RunOut r;
  std::vector<float> row(static_cast<size_t>(V));
  m.forward(prompt.data(), int64_t(prompt.size()), s, row.data());
  for (int i = 0; i < steps; ++i) {
    r.logits.insert(r.logits.end(), row.begin(), row.end());
    const int32_t next = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    r.tokens.push_back(next);
    m.forward(&next, 1, s, row.data());
  }
  return r;
}

TEST(ExpertOffload, EveryCacheSizeGivesBitIdenticalLogits) {
  Model plain = Model::load(tiny_moe_dev().string());
  const int k = int(plain.config().n_experts_active), E = int(plain.config().n_experts);
  const RunOut ref = run_greedy(plain, 12);
  for (int n : {1, 2, k - 1, k, 2 * k, E})
    for (bool prefetch : {false, true}) {
      LoadOptions lo;
      lo.moe_expert_cache_size = n;
      lo.moe_prefetch = prefetch ? PrefetchMode::on : PrefetchMode::off;
      Model m = Model::load(tiny_moe_dev().string(), lo);
      const RunOut got = run_greedy(m, 12);
      EXPECT_EQ(got.tokens, ref.tokens) << "cache " << n << " prefetch " << prefetch;
      EXPECT_TRUE(got.logits == ref.logits) << "cache " << n << " prefetch " << prefetch << ": logits differ";
      const ExpertProviderStats st = m.expert_cache()->stats();
      const int64_t bytes = m.expert_cache()->config().bytes_per_expert;
      EXPECT_EQ(st.cache.bytes_copied, (st.cache.misses + st.cache.streamed + st.cache.prefetched) * bytes);
      // the host arena copies synchronously: every copy is timed and all of it is exposed
      EXPECT_EQ(st.cache.copy_ns > 0, st.cache.bytes_copied > 0);
      EXPECT_EQ(st.cache.copy_exposed_ns, st.cache.copy_ns);
      if (n == 1) {
        EXPECT_GT(st.cache.misses + st.cache.streamed, st.cache.hits) << "one slot must thrash";
      }
      if (n == E) {
        EXPECT_EQ(st.cache.streamed, 0);
      }
      if (!prefetch) {
        EXPECT_EQ(st.cache.prefetched, 0);
      }
      if (prefetch && n >= k) {
        EXPECT_GT(st.cache.prefetched, 0) << "cache " << n;
      }
      EXPECT_LE(st.prefetch_hits, st.cache.prefetched);
    }
}

// Negative control: a copy path that corrupts what it moves (here: the first byte of each tensor's copy is
// flipped) must show in the logits, so the bit-equality above is not vacuous.
class CorruptingArena final : public ExpertArena {
 public:
  explicit CorruptingArena(HostExpertArena& inner) : inner_(inner) {}
  uint8_t* slot(int l, int s) override { return inner_.slot(l, s); }
  uint8_t* stream_buffer(int l, int b) override { return inner_.stream_buffer(l, b); }
  void copy(uint8_t* dst, const uint8_t* src, size_t n) override {
    inner_.copy(dst, src, n);
    dst[0] ^= 0x5a;
  }
  void fence() override {}

 private:
  HostExpertArena& inner_;
};

TEST(ExpertOffload, CorruptedCopiesChangeTheLogits) {
  Model plain = Model::load(tiny_moe_dev().string());
  const RunOut ref = run_greedy(plain, 4);
  ExpertCacheConfig ec;
  ec.n_layers = int(plain.config().n_layers);
  ec.n_experts = int(plain.config().n_experts);
  ec.n_slots = 2;
  ec.n_stream_buffers = ec.n_experts - ec.n_slots;
  ec.bytes_per_expert = CachedExpertProvider::expert_bytes(plain.weights());
  HostExpertArena host(ec.n_layers, ec.n_slots, ec.n_stream_buffers, ec.bytes_per_expert);
  CorruptingArena bad(host);
  CachedExpertProvider prov(plain.weights(), ec, bad, false);  // plain's weights are the experts' home copies
  LoadOptions lo;
  lo.experts = &prov;
  Model m = Model::load(tiny_moe_dev().string(), lo);
  EXPECT_FALSE(run_greedy(m, 4).logits == ref.logits);
}

TEST(ExpertOffload, CacheSizeIsCheckedAgainstAnExplicitProvider) {
  LoadOptions lo;
  lo.moe_expert_cache_size = 2;
  class Nothing final : public ExpertProvider {
    void acquire(int, std::span<const int32_t>, std::span<const ExpertWeights*>) override {}
    void release(int) override {}
  } nothing;
  lo.experts = &nothing;
  EXPECT_THROW(Model::load(tiny_moe_dev().string(), lo), Error);
}

}  // namespace
}  // namespace hlwq
