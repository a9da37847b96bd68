// `hlwq synth` and `hlwq bench` end to end: a synthetic demo-shaped model is accepted by inspect and run, bench
// prints every field with a positive value (speed is never asserted), and bad input is one clear error.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "test_paths.h"

namespace {

namespace fs = std::filesystem;
using hlwq::test::run_hlwq;

std::string demo() { return (hlwq::test::source_dir() / "models/tiny-moe-dev").string(); }

TEST(SynthCli, DemoShapedModelInspectsAndRuns) {
  const fs::path dst = hlwq::test::scratch_dir("synth-cli") / "m";
  auto r = run_hlwq("synth --like " + demo() + " " + dst.string() + " --layers 3 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("GB/s"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dst / "tokenizer.json"));  // the demo model's own tokenizer fits its vocabulary
  auto i = run_hlwq("inspect --json " + dst.string());
  ASSERT_EQ(i.exit_code, 0) << i.out;
  const auto j = nlohmann::json::parse(i.out);
  EXPECT_EQ(j["layers"]["full_attention"], 1);
  auto g = run_hlwq("run " + dst.string() + " -p 'hello' -n 4 --temp 0 --device cpu");
  EXPECT_EQ(g.exit_code, 0) << g.out;
  // an existing output needs --force; a target that does not exist is a usage error
  EXPECT_EQ(run_hlwq("synth --like " + demo() + " " + dst.string() + " --layers 1").exit_code, 1);
  EXPECT_EQ(run_hlwq("synth --like " + demo() + " " + dst.string() + " --layers 1 --force").exit_code, 0);
  auto bad = run_hlwq("synth --like no-such-target " + (dst.parent_path() / "x").string());
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_NE(bad.out.find("no-such-target"), std::string::npos) << bad.out;
  EXPECT_EQ(run_hlwq("synth --like " + demo() + " " + (dst.parent_path() / "y").string() + " --format int3").exit_code, 2);
}

TEST(BenchCli, JsonFieldsArePositive) {
  auto r = run_hlwq("bench " + demo() + " --device cpu --batch 2 --prompt-len 8 --gen-len 2 --decode-prompt-len 4 "
                    "--repeats 1 --warmup 0 --json -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"resident_weight_bytes", "dense_weight_bytes_per_step", "expert_bytes", "kv_bytes_per_token",
                        "gdn_state_bytes_per_sequence"})
    EXPECT_GT(j[k].get<double>(), 0) << k;
  EXPECT_GT(j["ceilings"]["read_gbs"].get<double>(), 0);
  EXPECT_GT(j["ceilings"]["copy_gbs"].get<double>(), 0);
  for (const char* phase : {"prefill", "decode"})
    for (const char* k : {"tok_s", "weight_bytes", "weight_gbs", "routed_experts", "speed_of_light_tok_s",
                          "fraction_of_speed_of_light"})
      EXPECT_GT(j[phase][k].get<double>(), 0) << phase << "." << k;
  EXPECT_EQ(j["decode"]["batch"], 2);
  EXPECT_TRUE(j["decode"]["routed_experts_counted"].get<bool>());
  // demo model: 6 MoE layers, 2 sequences × top-4 of 16 experts: 4..8 distinct experts per layer per step
  const double per_layer_step = j["decode"]["routed_experts"].get<double>() / (6 * 2);
  EXPECT_GE(per_layer_step, 4);
  EXPECT_LE(per_layer_step, 8);
  // KV: 2 full-attention layers × K, V × 2 heads × 64 dims × 2 bytes
  EXPECT_EQ(j["kv_bytes_per_token"].get<double>(), 2 * 2 * 2 * 64 * 2);
  EXPECT_EQ(run_hlwq("bench " + demo() + " --batch 0").exit_code, 2);
  EXPECT_EQ(run_hlwq("bench /no/such/model").exit_code, 2);
}

}  // namespace
