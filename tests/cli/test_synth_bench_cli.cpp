// `hlwq synth` and `hlwq bench` end to end: a synthetic demo-shaped model is accepted by inspect and run, bench
// prints every field with a positive value (speed is never asserted), and bad input is one clear error. Routing
// traces: --route-trace-gen writes one for the model, --route-trace replays it (each decode step then acquires
// exactly top-k experts per layer), and a trace for another model's shape is refused by name.
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

TEST(BenchCli, RouteTraceGenAndReplay) {
  const fs::path dir = hlwq::test::scratch_dir("bench-trace");
  const std::string trace = (dir / "demo.trace").string(), other = (dir / "other.trace").string();
  auto g = run_hlwq("bench " + demo() + " --route-trace-gen " + trace +
                    " --trace-steps 64 --trace-zipf 0.6 --trace-reuse 0.3 --trace-seed 9");
  ASSERT_EQ(g.exit_code, 0) << g.out;
  EXPECT_NE(g.out.find("16 experts top-4, 6 layers"), std::string::npos) << g.out;
  const std::string common = " --device cpu --batch 1 --prompt-len 8 --more-prompt-lens 16 --gen-len 2 "
                             "--decode-prompt-len 4 --repeats 1 --warmup 0 --json -t 2";
  auto r = run_hlwq("bench " + demo() + common + " --route-trace " + trace);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["routing"].get<std::string>().rfind("trace " + trace, 0), 0u) << j["routing"];
  ASSERT_EQ(j["prefill_more"].size(), 1u);
  EXPECT_EQ(j["prefill_more"][0]["tokens"], 16);
  EXPECT_GT(j["prefill_more"][0]["tok_s"].get<double>(), 0);
  // one token per step: the trace's 4 distinct experts in each of the 6 layers, counted through the provider
  EXPECT_EQ(j["decode"]["routed_experts"].get<double>(), 6 * 2 * 4);
  // with a cache, the counters come per phase (prefetch auto by default: on, on the CPU)
  auto c = run_hlwq("bench " + demo() + common + " --route-trace " + trace + " --moe-expert-cache-size 4 "
                    "--max-num-batched-tokens 16");
  ASSERT_EQ(c.exit_code, 0) << c.out;
  const auto jc = nlohmann::json::parse(c.out);
  EXPECT_TRUE(jc["decode"]["expert_cache"].contains("prefetch_wasted")) << c.out;
  EXPECT_EQ(jc["moe_prefetch"].get<std::string>(), "auto");
  EXPECT_EQ(jc["max_num_batched_tokens"], 16);
  // copy time: the CPU cache's copies are synchronous, all of them exposed
  const auto& dc = jc["decode"]["expert_cache"];
  EXPECT_GT(dc["copy_ms"].get<double>(), 0) << c.out;
  EXPECT_EQ(dc["copy_exposed_ms"].get<double>(), dc["copy_ms"].get<double>());
  EXPECT_EQ(run_hlwq("bench " + demo() + " --max-num-batched-tokens 8").exit_code, 2);
  // a trace for the 4-layer, 8-expert fixture does not fit the demo model
  const std::string small = (hlwq::test::source_dir() / "testdata/tiny-random-small-ct-int4").string();
  ASSERT_EQ(run_hlwq("bench " + small + " --route-trace-gen " + other + " --trace-steps 8 --trace-zipf 0 "
                     "--trace-reuse 0").exit_code, 0);
  auto bad = run_hlwq("bench " + demo() + common + " --route-trace " + other);
  EXPECT_EQ(bad.exit_code, 1) << bad.out;
  EXPECT_NE(bad.out.find("routing trace of 4 layers, 8 experts top-4"), std::string::npos) << bad.out;
  EXPECT_EQ(run_hlwq("bench " + demo() + " --route-trace-gen " + trace + " --trace-zipf 1").exit_code, 2);
  EXPECT_EQ(run_hlwq("bench " + demo() + " --route-trace /no/such.trace").exit_code, 2);
}

}  // namespace
