#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "test_paths.h"

using hlwq::test::run_hlwq;

TEST(InspectCli, DemoModelJsonMemoryPlan) {
  auto r = run_hlwq("inspect --json " + (hlwq::test::source_dir() / "models/tiny-moe-dev").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "qwen3_5_moe");
  EXPECT_EQ(j["layers"]["full_attention"], 2);
  const auto& plan = j["memory_plan"];
  // one bf16 expert: 3 projections of 128x256 -> 3 * 128 * 256 * 2 bytes
  EXPECT_EQ(plan["expert_bytes"], 3 * 128 * 256 * 2);
  EXPECT_EQ(plan["moe_layers"], 6);
  std::map<int64_t, uint64_t> by;  // cached experts -> resident bytes
  for (const auto& row : plan["resident_bytes_by_expert_cache_size"])
    by[row["cached_experts"].get<int64_t>()] = row["resident_bytes"].get<uint64_t>();
  EXPECT_EQ(by.at(8) - by.at(4), 4ull * 6 * 3 * 128 * 256 * 2);
  EXPECT_EQ(by.rbegin()->first, 16);  // the last row caches every expert
  EXPECT_EQ(by.at(16), j["total_bytes"].get<uint64_t>());
  EXPECT_EQ(j["kinds"]["linear_attention_gdn"]["tensors"], 36);
  // KV: 2 full layers * K,V * 2 kv heads * 64 dims * 2 bytes * 1000 tokens
  EXPECT_EQ(plan["kv_cache_bytes_per_1k_tokens_bf16"], 2 * 2 * 2 * 64 * 2 * 1000);
}

TEST(InspectCli, CorruptModelIsAnError) {
  auto r = run_hlwq("inspect /nonexistent-model-dir");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("/nonexistent-model-dir does not exist"), std::string::npos) << r.out;
}

// --n-cpu-moe K: the first K MoE layers' experts leave the GPU plan (as run/serve place them) and the CPU reads
// k of them per token per such layer; K past the layer count is a usage error.
TEST(InspectCli, NCpuMoeMovesExpertsOutOfThePlan) {
  const std::string demo = (hlwq::test::source_dir() / "models/tiny-moe-dev").string();
  auto r = run_hlwq("inspect --json --n-cpu-moe 2 " + demo);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  const auto& plan = j["memory_plan"];
  const uint64_t expert = 3 * 128 * 256 * 2;
  EXPECT_EQ(plan["n_cpu_moe"], 2);
  EXPECT_EQ(plan["cpu_expert_bytes_per_token"], 2 * 4 * expert);  // 2 layers x top-4
  std::map<int64_t, uint64_t> by;
  for (const auto& row : plan["resident_bytes_by_expert_cache_size"])
    by[row["cached_experts"].get<int64_t>()] = row["resident_bytes"].get<uint64_t>();
  EXPECT_EQ(by.at(16), j["total_bytes"].get<uint64_t>() - 2 * 16 * expert);  // 4 GPU layers of all 16 experts
  EXPECT_EQ(by.at(8) - by.at(4), 4ull * 4 * expert);
  auto text = run_hlwq("inspect --n-cpu-moe 6 " + demo);
  ASSERT_EQ(text.exit_code, 0) << text.out;
  EXPECT_NE(text.out.find("--n-cpu-moe 6: the routed experts of MoE layers 0..5 stay in host RAM"), std::string::npos)
      << text.out;
  auto bad = run_hlwq("inspect --n-cpu-moe 7 " + demo);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.out.find("--n-cpu-moe 7: the model has 6 MoE layers"), std::string::npos) << bad.out;
}
