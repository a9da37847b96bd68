// /metrics text: the expert-cache counters appear exactly when the engine publishes them (offload on), with the
// published values; without offload none of their lines exist.
#include <gtest/gtest.h>

#include "server/queue.h"

namespace hlwq::server {
namespace {

TEST(Metrics, ExpertCacheCountersOnlyWithACache) {
  RequestQueue q(4, 100);
  EXPECT_EQ(q.render_metrics().find("hlwq_expert_cache"), std::string::npos);
  ExpertCacheStats st;
  st.hits = 70, st.misses = 20, st.streamed = 10, st.bytes_copied = 30 * 1622016;
  st.copy_ns = 2'500'000'000, st.copy_exposed_ns = 1'250'000;
  st.prefetched = 9, st.prefetch_hits = 6, st.prefetch_wasted = 2, st.steps_prefetching = 40;
  st.steps_not_prefetching = 472, st.cpu_experts = 3;
  q.set_expert_cache(st);
  const std::string m = q.render_metrics();
  EXPECT_NE(m.find("hlwq_expert_cache_hits_total 70\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_loads_total 20\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_streamed_total 10\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_bytes_total 48660480\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_copy_seconds_total 2.500000\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_copy_exposed_seconds_total 0.001250\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_prefetched_total 9\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_prefetch_hits_total 6\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_prefetch_wasted_total 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_steps_prefetching_total 40\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_steps_not_prefetching_total 472\n"), std::string::npos) << m;
  EXPECT_NE(m.find("hlwq_expert_cache_cpu_experts_total 3\n"), std::string::npos) << m;
  EXPECT_NE(m.find("# TYPE hlwq_expert_cache_hits_total counter"), std::string::npos) << m;
}

}  // namespace
}  // namespace hlwq::server
