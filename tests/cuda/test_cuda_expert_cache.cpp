// The GPU expert cache's plan (expert_cache_dev.cuh) against the tested CPU policy (src/moe/expert_cache, kLru):
// on random routing sequences, for cache sizes from one slot to all experts and batches of 1–16 tokens, every
// step leaves the same expert in every slot, the same counters, pointer tables that point each expert at its slot
// or its host copy, and slot bytes equal to the expert's host bytes. With prefetch: between steps, a prefetch from
// crafted router logits (the predicted experts score highest) places exactly what ExpertCache::prefetch places
// for the same distinct ids, ascending, with the same prefetch hit and waste counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "backend/cuda/expert_cache_dev.cuh"
#include "cuda_test_util.h"
#include "moe/expert_cache.h"

namespace hlwq {
namespace {

void check_policy(int64_t E, int64_t N, int64_t T, int64_t k, uint64_t seed, bool prefetch = false) {
  SCOPED_TRACE(testing::Message() << "E=" << E << " N=" << N << " T=" << T << " k=" << k << " prefetch " << prefetch);
  std::mt19937_64 rng(seed);
  cuda::ExpertLayout lay;
  lay.int4 = true;
  lay.gu_q = 0, lay.gu_s = 64, lay.dn_q = 96, lay.dn_s = 160, lay.bytes = 192;
  // the "host" copies live in device memory here: the plan and copy kernels only need device-visible bytes
  std::vector<uint8_t> host(size_t(E * lay.bytes));
  for (auto& b : host) b = uint8_t(rng());
  cuda::DeviceBuffer<uint8_t> dhost(host, "host experts");
  auto c = cuda::make_expert_cache(E, N, lay, dhost.get());
  // the tables start where attach_expert_cache points them: every expert at its host copy
  std::vector<const uint32_t*> hq, hdq;
  std::vector<const float*> hs, hds;
  for (int64_t e = 0; e < E; ++e) {
    const uint8_t* x = dhost.get() + e * lay.bytes;
    hq.push_back(reinterpret_cast<const uint32_t*>(x + lay.gu_q)), hdq.push_back(reinterpret_cast<const uint32_t*>(x + lay.dn_q));
    hs.push_back(reinterpret_cast<const float*>(x + lay.gu_s)), hds.push_back(reinterpret_cast<const float*>(x + lay.dn_s));
  }
  cuda::DeviceBuffer<const uint32_t*> gq(hq, "gq"), dq(hdq, "dq");
  cuda::DeviceBuffer<const float*> gs(hs, "gs"), ds(hds, "ds");
  const cuda::ExpertTables tables{gq.get(), gs.get(), dq.get(), ds.get()};
  ExpertCacheConfig cfg;
  cfg.n_layers = 1, cfg.n_experts = int(E), cfg.n_slots = int(N), cfg.n_stream_buffers = int(E);
  ExpertCache ref(cfg);
  // routing with locality, as real models have: each token draws from a small hot set most of the time
  std::vector<int32_t> hot(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) hot[size_t(e)] = int32_t(e);
  std::shuffle(hot.begin(), hot.end(), rng);
  cuda::DeviceBuffer<int> ids(size_t(T * k), "ids");
  for (int step = 0; step < 40; ++step) {
    std::vector<int> h(size_t(T * k));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int32_t> pool(hot);
      std::shuffle(pool.begin() + std::min<int64_t>(E, 2 * k), pool.end(), rng);
      std::shuffle(pool.begin(), pool.begin() + std::min<int64_t>(E, 2 * k), rng);
      const bool local = rng() % 4 != 0;
      if (!local) std::shuffle(pool.begin(), pool.end(), rng);
      for (int64_t j = 0; j < k; ++j) h[size_t(t * k + j)] = pool[size_t(j)];  // distinct within a token
    }
    ids.upload(h.data(), h.size());
    cuda::expert_cache_step(c, ids.get(), T, k, tables, nullptr);
    HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "expert cache step");
    // the CPU policy on the distinct ids in order of first appearance
    std::vector<int32_t> req;
    for (int e : h)
      if (std::find(req.begin(), req.end(), e) == req.end()) req.push_back(e);
    ref.begin_step(0, req);
    ref.end_step(0);
    std::vector<int32_t> touched(req);
    if (prefetch) {  // predictions for the next step: half hot, half anywhere, for 1..T tokens
      const int64_t Th = 1 + int64_t(rng() % uint64_t(T));
      std::vector<float> logits(size_t(Th * (E + 1)));
      std::vector<int32_t> hinted;
      for (int64_t t = 0; t < Th; ++t) {
        std::vector<int32_t> pool(hot);
        if (rng() % 2) std::shuffle(pool.begin(), pool.end(), rng);
        else std::shuffle(pool.begin(), pool.begin() + std::min<int64_t>(E, 3 * k), rng);
        float* row = logits.data() + t * (E + 1);
        for (int64_t e = 0; e <= E; ++e) row[e] = float(rng() % 1000) * 1e-3f;  // column E: a shared gate
        for (int64_t j = 0; j < k; ++j) row[pool[size_t(j)]] = 10.f + float(j), hinted.push_back(pool[size_t(j)]);
      }
      cuda::DeviceBuffer<float> dl(logits, "hint logits");
      cuda::expert_cache_prefetch(c, dl.get(), E + 1, Th, k, tables, nullptr);
      cuda::expert_cache_prefetch_copy(c, Th * k, nullptr);
      HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "expert cache prefetch");
      std::sort(hinted.begin(), hinted.end());
      hinted.erase(std::unique(hinted.begin(), hinted.end()), hinted.end());
      ref.prefetch(0, hinted);
      touched.insert(touched.end(), hinted.begin(), hinted.end());
    }
    const auto se = c.slot_expert.download();
    for (int64_t s = 0; s < N; ++s) ASSERT_EQ(se[size_t(s)], ref.slot_expert(0, int(s))) << "step " << step << " slot " << s;
    const auto cnt = cuda::expert_cache_counters(c);
    ASSERT_EQ(int64_t(cnt.hits), ref.stats().hits) << "step " << step;
    ASSERT_EQ(int64_t(cnt.loads), ref.stats().misses) << "step " << step;
    ASSERT_EQ(int64_t(cnt.streamed), ref.stats().streamed) << "step " << step;
    ASSERT_EQ(int64_t(cnt.prefetched), ref.stats().prefetched) << "step " << step;
    ASSERT_EQ(int64_t(cnt.prefetch_hits), ref.stats().prefetch_hits) << "step " << step;
    ASSERT_EQ(int64_t(cnt.prefetch_wasted), ref.stats().prefetch_wasted) << "step " << step;
    // tables and slot contents
    const auto tq = gq.download();
    const auto slots = c.slots.download();
    for (int32_t e : touched) {
      const int s = ref.expert_slot(0, e);
      const uint8_t* want = s >= 0 ? c.slots.get() + s * lay.bytes : dhost.get() + e * lay.bytes;
      ASSERT_EQ(reinterpret_cast<const uint8_t*>(tq[size_t(e)]), want + lay.gu_q) << "step " << step << " expert " << e;
      if (s >= 0) {
        ASSERT_TRUE(std::equal(slots.begin() + s * lay.bytes, slots.begin() + (s + 1) * lay.bytes,
                               host.begin() + e * lay.bytes))
            << "slot " << s << " does not hold expert " << e << "'s bytes";
      }
    }
  }
}

TEST(CudaExpertCache, PlanMatchesTheCpuPolicy) {
  HLWQ_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (int64_t N : {1, 3, 8, 20, 64})
    for (int64_t T : {1, 4, 16}) check_policy(64, N, T, 8, seed++);
  check_policy(256, 16, 1, 8, seed++);  // Qwen3.6's 256 experts, top-8
  check_policy(512, 100, 4, 10, seed++);  // Qwen3-Next's 512, top-10
}

TEST(CudaExpertCache, PrefetchMatchesTheCpuPolicy) {
  HLWQ_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (int64_t N : {1, 3, 8, 20, 64})
    for (int64_t T : {1, 4}) check_policy(64, N, T, 8, seed++, true);
  check_policy(256, 32, 1, 8, seed++, true);
  check_policy(512, 64, 2, 10, seed++, true);
}

// Negative control: the check sees a wrong plan. A cache advanced by an extra step diverges from the policy.
TEST(CudaExpertCache, AnExtraStepIsSeen) {
  HLWQ_REQUIRE_CUDA();
  cuda::ExpertLayout lay;
  lay.int4 = false;
  lay.gu_q = 0, lay.dn_q = 16, lay.bytes = 32;
  cuda::DeviceBuffer<uint8_t> dhost(size_t(8 * 32), "host");
  auto c = cuda::make_expert_cache(8, 2, lay, dhost.get());
  cuda::DeviceBuffer<const uint32_t*> gq(8, "gq"), dq(8, "dq");
  cuda::DeviceBuffer<const float*> gs(8, "gs"), ds(8, "ds");
  std::vector<int> a{0, 1}, b{2, 3};
  cuda::DeviceBuffer<int> ids(a, "ids");
  cuda::expert_cache_step(c, ids.get(), 1, 2, {gq.get(), gs.get(), dq.get(), ds.get()}, nullptr);
  ids.upload(b.data(), b.size());
  cuda::expert_cache_step(c, ids.get(), 1, 2, {gq.get(), gs.get(), dq.get(), ds.get()}, nullptr);
  ExpertCacheConfig cfg;
  cfg.n_layers = 1, cfg.n_experts = 8, cfg.n_slots = 2;
  ExpertCache ref(cfg);
  ref.begin_step(0, std::vector<int32_t>{0, 1});
  ref.end_step(0);
  const auto se = c.slot_expert.download();
  EXPECT_NE(se[0], ref.slot_expert(0, 0));  // the device took 2 and 3 into the slots of 0 and 1
  EXPECT_EQ(se[0], 2);
  EXPECT_EQ(se[1], 3);
}

}  // namespace
}  // namespace hlwq
