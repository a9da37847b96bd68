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
