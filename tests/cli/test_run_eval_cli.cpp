// `hlwq run` and `hlwq eval` end to end on the bundled demo model, and their errors.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "io/hf_config.h"
#include "test_paths.h"

using hlwq::test::run_hlwq;
namespace fs = std::filesystem;

namespace {

std::string demo() { return (hlwq::test::source_dir() / "models/tiny-moe-dev").string(); }

fs::path corpus(const std::string& name) { return hlwq::test::shared_dir() / "corpus" / name; }

#define REQUIRE_CORPUS(name)                                                                          \
  do {                                                                                                \
    if (!fs::exists(corpus(name)))                                                                    \
      GTEST_SKIP() << "SKIPPED LOUDLY: " << corpus(name) << " is absent (fresh clone without ../shared)"; \
  } while (0)

// Relative tolerance of the perplexity reproduction (issue: within 0.2 % of transformers' figure).
constexpr double kPplRelTol = 0.002;

void expect_ppl_matches(const std::string& text, const std::string& key) {
  auto ref = hlwq::read_json_file((hlwq::test::shared_dir() / "fixtures/tiny-moe-dev-ppl.json").string());
  auto r = run_hlwq("eval ppl " + demo() + " --text " + corpus(text).string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  const double want = ref["ppl_" + key].get<double>();
  EXPECT_EQ(j["scored_tokens"], ref["scored_tokens_" + key]);
  EXPECT_NEAR(j["ppl"].get<double>(), want, want * kPplRelTol);
}

}  // namespace

TEST(EvalCli, PerplexityMatchesTransformersOnPydocs) {
  REQUIRE_CORPUS("pydocs_heldout.txt");
  HLWQ_REQUIRE_SHARED("tiny-moe-dev-ppl.json");
  expect_ppl_matches("pydocs_heldout.txt", "pydocs_heldout");
}

// WikiText-2 on its first 64 windows (32,704 scored tokens) against transformers on the same windows
// (testdata/tiny-moe-dev-wiki-test-64w-ppl.json, written by tests/tools/ppl_reference.py on the GPU machine with
// torch 2.11 / transformers 5.17; the same script run on the whole texts reproduces the shared fixture's 137.21502
// and 38.92623 to the last digit). The whole text (765 windows) took 520–766 s of CI's two cores, the suite's
// critical path; the windows are independent, so the first 64 exercise the same protocol and code at 1/12 of it.
TEST(EvalCli, PerplexityMatchesTransformersOnWikiTextFirst64Windows) {
  REQUIRE_CORPUS("wiki_test.txt");
  auto ref = hlwq::read_json_file(
      (hlwq::test::source_dir() / "testdata/tiny-moe-dev-wiki-test-64w-ppl.json").string());
  ASSERT_EQ(ref["windows"].get<int>(), 64);
  auto r = run_hlwq("eval ppl " + demo() + " --text " + corpus("wiki_test.txt").string() + " --max-windows 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  const double want = ref["ppl"].get<double>();
  EXPECT_EQ(j["scored_tokens"], ref["scored_tokens"]);
  EXPECT_NEAR(j["ppl"].get<double>(), want, want * kPplRelTol);
}

TEST(EvalCli, PerplexityDoesNotDependOnThreadCount) {
  // Windows run in parallel; their sums are reduced in window order, so the figure is bit-identical.
  const fs::path text = hlwq::test::scratch_dir("ppl_threads") / "t.txt";
  {
    std::ofstream f(text);
    for (int i = 0; i < 60; ++i) f << "A list is a mutable sequence; item " << i << " goes at the end.\n\n";
  }
  std::string ppl[2];
  for (int t : {1, 2}) {
    auto r = run_hlwq("eval ppl " + demo() + " --text " + text.string() + " --ctx 64 --json -t " + std::to_string(t));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    ppl[t - 1] = nlohmann::json::parse(r.out)["ppl"].dump();
  }
  EXPECT_EQ(ppl[0], ppl[1]);
}

TEST(EvalCli, KldOfAModelAgainstItselfIsZero) {
  const fs::path text = hlwq::test::scratch_dir("kld_self") / "t.txt";
  {
    std::ofstream f(text);
    for (int i = 0; i < 40; ++i) f << "The interpreter reads a line of input and runs it, number " << i << ".\n\n";
  }
  auto r = run_hlwq("eval kld " + demo() + " --base " + demo() + " --text " + text.string() + " --ctx 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["kld"].get<double>(), 0.0, 1e-9);
  EXPECT_EQ(j["top1_agree"].get<double>(), 1.0);
  EXPECT_EQ(j["ppl"], j["base_ppl"]);
}

TEST(EvalCli, KldRanksQuantizationMethods) {
  // On held-out text the MSE-scale INT4 must stay closer to bf16 than the seed's RTN (reference table:
  // 0.203 vs 0.270 on the full text), and both must be clearly away from zero.
  REQUIRE_CORPUS("pydocs_heldout.txt");
  const fs::path root = hlwq::test::scratch_dir("kld_methods");
  double kld[2];
  int i = 0;
  for (const char* method : {"rtn", "mse"}) {
    const fs::path q = root / method;
    ASSERT_EQ(run_hlwq("quantize -q " + demo() + " " + q.string() + " --method " + method).exit_code, 0);
    auto r = run_hlwq("eval kld " + q.string() + " --base " + demo() + " --text " +
                      corpus("pydocs_heldout.txt").string() + " --max-windows 12 --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    kld[i++] = nlohmann::json::parse(r.out)["kld"].get<double>();
  }
  EXPECT_GT(kld[0], 0.1);
  EXPECT_LT(kld[1], kld[0]);
}

TEST(RunCli, GreedyGenerationIsDeterministicAndReportsSpeed) {
  auto a = run_hlwq("run " + demo() + " -p 'The Python interpreter' -n 24 --temp 0");
  auto b = run_hlwq("run " + demo() + " -p 'The Python interpreter' -n 24 --temp 0 --seed 99");
  ASSERT_EQ(a.exit_code, 0) << a.out;
  // The text between the sampling line (which names the seed) and the stats.
  auto text = [](const std::string& out) { return out.substr(out.find('\n') + 1, out.find("prompt:") - out.find('\n') - 1); };
  EXPECT_NE(a.out.find("sampling: greedy (temperature 0)"), std::string::npos) << a.out;
  EXPECT_EQ(text(a.out), text(b.out));
  EXPECT_NE(a.out.find("generation: 24 tokens"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("tok/s"), std::string::npos);
}

// With an expert cache, run ends with the cache's counters, the prefetch's among them (auto runs it on the CPU); with
// the prefetch off there is no prefetch to report.
TEST(RunCli, ExpertCacheCountersAtTheEnd) {
  const std::string cmd = "run " + demo() + " -p 'The Python interpreter' -n 16 --temp 0 --device cpu "
                          "--moe-expert-cache-size 4";
  auto r = run_hlwq(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("expert cache: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; prefetch: "), std::string::npos) << r.out;
  auto off = run_hlwq(cmd + " --moe-prefetch off");
  ASSERT_EQ(off.exit_code, 0) << off.out;
  EXPECT_NE(off.out.find("expert cache: "), std::string::npos) << off.out;
  EXPECT_EQ(off.out.find("prefetch: "), std::string::npos) << off.out;
}

TEST(RunCli, ChatTemplateAndStopOnImEnd) {
  auto r = run_hlwq("run " + demo() + " --chat -p 'What is a list?' -n 64 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out.find("<|im_end|>"), std::string::npos) << "stop token must not be printed: " << r.out;
}

TEST(RunCli, EmptyPromptIsAnError) {
  auto r = run_hlwq("run " + demo() + " -p ''");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("empty prompt"), std::string::npos) << r.out;
}

TEST(RunCli, PromptBeyondContextIsAnError) {
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "word ";
  auto r = run_hlwq("run " + demo() + " -p '" + long_prompt + "' --ctx 16");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("does not fit the context of 16"), std::string::npos) << r.out;
}

TEST(RunCli, CorruptModelDirectoryIsAnError) {
  const fs::path dir = hlwq::test::scratch_dir("run_corrupt") / "m";
  fs::copy(demo(), dir, fs::copy_options::recursive);
  fs::resize_file(dir / "model-00001-of-00002.safetensors", 1000);
  auto r = run_hlwq("run " + dir.string() + " -p hello");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("model-00001-of-00002.safetensors"), std::string::npos) << r.out;
  fs::remove(dir / "tokenizer.json");
  fs::remove(dir / "config.json");
  r = run_hlwq("run " + dir.string() + " -p hello");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("missing config.json"), std::string::npos) << r.out;
}

TEST(ChatCli, TwoTurnsFromStdin) {
  auto r = run_hlwq("chat " + demo() + " -n 16 --temp 0 < <(printf 'Hello\\nWhat is a tuple?\\n/exit\\n')");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '['), 2) << r.out;  // one speed line per turn
}
