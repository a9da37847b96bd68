// The slot plan's CPU split (expert_cache_dev.cuh with CpuSplitArgs; cost model cpu_split.h) against a CPU mirror
// built from the tested policy (src/moe/expert_cache, kLru) and cpu_split_count: on random routing with locality,
// every step marks exactly the last cpu_split_count misses (in order of first appearance) for the CPU; under auto
// those take no slot (the policy sees the step without them), under all every miss is marked and the slots evolve
// as without a split, and nothing is counted as read in place; the counters add up. Negative control: the same
// check on a plan run without the split finds no marks where the mirror expects some.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "backend/cuda/expert_cache_dev.cuh"
#include "cuda_test_util.h"
#include "moe/expert_cache.h"

namespace hlwq {
namespace {

struct Fixture {
  cuda::ExpertLayout lay;
  cuda::DeviceBuffer<uint8_t> host;
  cuda::DeviceBuffer<const uint32_t*> gq, dq;
  cuda::DeviceBuffer<const float*> gs, ds;
  explicit Fixture(int64_t E) {
    lay.int4 = false;
    lay.gu_q = 0, lay.dn_q = 16, lay.bytes = 32;
    host = cuda::DeviceBuffer<uint8_t>(size_t(E * lay.bytes), "host experts");
    std::vector<const uint32_t*> q;
    for (int64_t e = 0; e < E; ++e) q.push_back(reinterpret_cast<const uint32_t*>(host.get() + e * lay.bytes));
    gq = cuda::DeviceBuffer<const uint32_t*>(q, "gq");
    dq = cuda::DeviceBuffer<const uint32_t*>(q, "dq");
    gs = cuda::DeviceBuffer<const float*>(std::vector<const float*>(size_t(E), nullptr), "gs");
    ds = cuda::DeviceBuffer<const float*>(std::vector<const float*>(size_t(E), nullptr), "ds");
  }
  cuda::ExpertTables tables() const { return {gq.get(), gs.get(), dq.get(), ds.get()}; }
};

// wrong_marks: the number of marks the device set where the mirror expected none or missed one (0: all agree).
void check_split(int64_t E, int64_t N, int64_t T, int64_t k, CpuExperts mode, const CpuSplitCosts& costs,
                 uint64_t seed, bool split_on_device = true, int64_t* wrong_marks_out = nullptr) {
  SCOPED_TRACE(testing::Message() << "E=" << E << " N=" << N << " T=" << T << " k=" << k << " mode "
                                  << cpu_experts_name(mode));
  std::mt19937_64 rng(seed);
  Fixture f(E);
  auto c = cuda::make_expert_cache(E, N, f.lay, f.host.get());
  cuda::DeviceBuffer<uint8_t> mark(std::vector<uint8_t>(size_t(E), 0), "marks");
  ExpertCacheConfig cfg;
  cfg.n_layers = 1, cfg.n_experts = int(E), cfg.n_slots = int(N), cfg.n_stream_buffers = int(E);
  ExpertCache ref(cfg);
  std::vector<int32_t> hot(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) hot[size_t(e)] = int32_t(e);
  std::shuffle(hot.begin(), hot.end(), rng);
  cuda::DeviceBuffer<int> ids(size_t(T * k), "ids");
  int64_t wrong_marks = 0, cpu_only = 0, loads = 0;
  for (int step = 0; step < 30; ++step) {
    std::vector<int> h(size_t(T * k));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int32_t> pool(hot);
      std::shuffle(pool.begin(), pool.begin() + std::min<int64_t>(E, 2 * k), rng);
      if (rng() % 4 == 0) std::shuffle(pool.begin(), pool.end(), rng);
      for (int64_t j = 0; j < k; ++j) h[size_t(t * k + j)] = pool[size_t(j)];
    }
    ids.upload(h.data(), h.size());
    cuda::expert_cache_step(c, ids.get(), T, k, f.tables(), nullptr,
                            split_on_device ? cuda::CpuSplitArgs{mode, costs, mark.get()} : cuda::CpuSplitArgs{});
    HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "expert cache step");
    // mirror: distinct ids in order of first appearance; misses = not resident before the step
    std::vector<int32_t> req, misses;
    for (int e : h)
      if (std::find(req.begin(), req.end(), e) == req.end()) req.push_back(e);
    for (int32_t e : req)
      if (ref.expert_slot(0, e) < 0) misses.push_back(e);
    const int n_cpu = cpu_split_count(mode, int(misses.size()), costs);
    const std::vector<int32_t> on_cpu(misses.end() - n_cpu, misses.end());
    std::vector<int32_t> gpu_req;  // under auto the CPU's misses never reach the policy
    for (int32_t e : req)
      if (mode == CpuExperts::all || std::find(on_cpu.begin(), on_cpu.end(), e) == on_cpu.end()) gpu_req.push_back(e);
    const int64_t streamed_before = ref.stats().streamed;
    ref.begin_step(0, gpu_req);
    ref.end_step(0);
    if (mode == CpuExperts::automatic) cpu_only += n_cpu;
    loads = ref.stats().misses;
    const auto m = mark.download();
    for (int64_t e = 0; e < E; ++e) {
      const bool want = std::find(on_cpu.begin(), on_cpu.end(), int32_t(e)) != on_cpu.end();
      if (bool(m[size_t(e)]) != want) ++wrong_marks;
    }
    if (wrong_marks_out) *wrong_marks_out = wrong_marks;
    if (!split_on_device) continue;
    EXPECT_EQ(wrong_marks, 0) << "step " << step;
    const auto se = c.slot_expert.download();
    for (int64_t s = 0; s < N; ++s) ASSERT_EQ(se[size_t(s)], ref.slot_expert(0, int(s))) << "step " << step << " slot " << s;
    const auto cnt = cuda::expert_cache_counters(c);
    ASSERT_EQ(int64_t(cnt.hits), ref.stats().hits) << "step " << step;
    ASSERT_EQ(int64_t(cnt.loads), loads) << "step " << step;
    ASSERT_EQ(int64_t(cnt.cpu_only), cpu_only) << "step " << step;
    if (mode == CpuExperts::all) {
      ASSERT_EQ(cnt.streamed, 0u) << "step " << step << ": under all a miss without a slot goes to the CPU";
      ASSERT_EQ(ref.stats().streamed - streamed_before, int64_t(std::count_if(on_cpu.begin(), on_cpu.end(), [&](int32_t e) {
                  return ref.expert_slot(0, e) < 0;
                }))) << "step " << step << ": the CPU took exactly the misses left without a slot, and some admitted";
    } else {
      ASSERT_EQ(int64_t(cnt.streamed), ref.stats().streamed) << "step " << step;
    }
  }
}

TEST(CudaCpuSplit, PlanMarksMatchTheMirror) {
  HLWQ_REQUIRE_CUDA();
  uint64_t seed = 11;
  const CpuSplitCosts balanced{1000, 400, 0}, slow_cpu{100, 1000, 500};
  for (int64_t N : {1, 3, 8, 20})
    for (int64_t T : {1, 4, 16}) {
      check_split(64, N, T, 8, CpuExperts::automatic, balanced, seed++);
      check_split(64, N, T, 8, CpuExperts::all, balanced, seed++);
    }
  check_split(64, 3, 1, 8, CpuExperts::automatic, slow_cpu, seed++);  // auto keeping everything on the GPU
  check_split(256, 16, 1, 8, CpuExperts::automatic, balanced, seed++);
}

// Negative control: without the split on the device the mirror's expected marks are missing.
TEST(CudaCpuSplit, AMissingSplitIsSeen) {
  HLWQ_REQUIRE_CUDA();
  int64_t wrong = 0;
  check_split(64, 2, 1, 8, CpuExperts::all, {}, 5, false, &wrong);
  EXPECT_GT(wrong, 0);
}

}  // namespace
}  // namespace hlwq
