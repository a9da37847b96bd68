// The command line as a llama.cpp or vLLM user meets it (issue 10): errors in words with one prefix and the
// documented exit codes, all options checked before anything runs or prints; generation defaults and seeds;
// familiar spellings; full-context finish; quantize making DST's parent; evaluation statistics; inspect keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "test_paths.h"

using hlwq::test::CliResult;
using hlwq::test::run_hlwq;
namespace fs = std::filesystem;

namespace {

std::string demo() { return (hlwq::test::source_dir() / "models/tiny-moe-dev").string(); }

// A calibrated quantize of the demo model on the CPU, whose options are checked before anything is read or written.
std::string calib_quantize() {
  return "quantize " + demo() + " out/never --calib " + (hlwq::test::source_dir() / "README.md").string() +
         " --calib-device cpu ";
}

// A rejected command line: exit code 2, exactly one line, the prefix, the words wanted, nothing else printed.
void expect_usage_error(const std::string& args, const std::string& needle) {
  const CliResult r = run_hlwq(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.out;
  EXPECT_EQ(r.out.rfind("hlwq: error: ", 0), 0u) << args << "\n" << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line only, nothing before: " << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "want '" << needle << "' in: " << r.out;
  EXPECT_LT(r.out.size(), 300u) << r.out;
}

uint64_t seed_of(const std::string& out) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(out, m, std::regex("\\| seed (\\d+)\n"))) << out;
  return m.empty() ? 0 : std::stoull(m[1]);
}

std::string generated(const std::string& out) { return out.substr(0, out.find("prompt: ")); }

fs::path write_file(const std::string& test, const std::string& name, const std::string& text) {
  const fs::path p = hlwq::test::scratch_dir(test) / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

}  // namespace

TEST(CliErrors, RangesInWordsBeforeAnythingRuns) {
  const std::string run = "run " + demo() + " -p 'The cat' ";
  expect_usage_error(run + "-n 0", "-n 0 generates nothing");
  expect_usage_error(run + "--temp -1", "--temp: got -1, expected a number from 0 to 100");
  expect_usage_error(run + "--temp abc", "--temp: 'abc' is not a number");
  expect_usage_error(run + "--top-p 0", "--top-p: got 0, expected a number greater than 0 and at most 1");
  expect_usage_error(run + "--top-k 2.5", "--top-k: '2.5' is not a whole number");
  expect_usage_error(run + "--stop ''", "--stop: an empty stop string");
  expect_usage_error(run + "--seed -2", "--seed: got -2");
  expect_usage_error(run + "--ctx 1", "--ctx: got 1, expected a whole number of at least 2");
  expect_usage_error(run + "--bogus", "--bogus");
  expect_usage_error("run " + demo(), "give a prompt with -p TEXT or -f FILE");
  expect_usage_error("eval ppl " + demo() + " --text x --ctx -5", "--ctx: got -5");
  expect_usage_error("quantize " + demo() + " /tmp/x --threads -1", "--threads: got -1");
  expect_usage_error("quantize " + demo() + " /tmp/x --method nope", "--method: ");
  expect_usage_error("quantize " + demo() + " /tmp/x --max-shard-size 5XB",
                     "--max-shard-size 5XB: size '5XB': unknown unit 'XB'");
}

// Routed experts on the CPU are a CUDA backend feature; their values are checked before anything loads.
TEST(CliErrors, CpuExpertOptionsAreChecked) {
  const std::string run = "run " + demo() + " -p hi ";
  expect_usage_error(run + "--device cpu --n-cpu-moe 1", "they need --device cuda");
  expect_usage_error(run + "--device cpu --cpu-experts auto", "they need --device cuda");
  expect_usage_error(run + "--cpu-experts sometimes", "--cpu-experts");
  expect_usage_error(run + "--n-cpu-moe -1", "--n-cpu-moe: got -1");
  expect_usage_error(run + "--moe-prefetch sometimes", "--moe-prefetch");
  expect_usage_error(run + "--moe-prefetch ''", "--moe-prefetch");
  expect_usage_error(run + "--moe-prefetch AUTO", "--moe-prefetch");
}

// --gpu-memory and quantize's --calib-gpu-memory share one parse: a bad size is a usage error naming the option and
// the value on any machine (it is checked before the device), as is a budget no model fits in.
TEST(CliErrors, GpuBudgetsAreChecked) {
  const std::string run = "run " + demo() + " -p hi ";
  expect_usage_error(run + "--gpu-memory 12XB", "--gpu-memory 12XB: size '12XB': unknown unit 'XB'");
  expect_usage_error(run + "--gpu-memory lots", "--gpu-memory lots: size 'lots' is not a positive number");
  expect_usage_error(run + "--gpu-memory 512KiB", "--gpu-memory 512KiB: a budget below 1 MiB cannot hold a model");
  expect_usage_error(run + "--device cpu --gpu-memory 12GB", "--gpu-memory 12GB needs --device cuda");
  // sizes past int64 (1e19 bytes) and past uint64 (1e30: undefined as a conversion) are refused, not wrapped
  expect_usage_error(run + "--gpu-memory 10000000000GB",
                     "--gpu-memory 10000000000GB: size '10000000000GB' is too large");
  expect_usage_error(run + "--gpu-memory 1e30GB", "is too large (at most 4 EiB)");
  // quantize's --calib-gpu-memory: the same parse, also before its device check
  const std::string q = calib_quantize() + "--calib-gpu-memory ";
  expect_usage_error(q + "12XB", "--calib-gpu-memory 12XB: size '12XB': unknown unit 'XB'");
  expect_usage_error(q + "512KiB", "--calib-gpu-memory 512KiB: a budget below 1 MiB cannot hold a model");
  expect_usage_error(q + "8GB", "--calib-gpu-memory needs the model on cuda");
  // an empty value is refused, not taken for the option left out
  expect_usage_error(run + "--gpu-memory ''", "--gpu-memory : size '' is not a positive number");
  expect_usage_error(q + "''", "--calib-gpu-memory : size '' is not a positive number");
}

// Every size option parses alike: a bad size is a usage error (exit 2) naming the option and its value.
TEST(CliErrors, SizeOptionsNameOptionAndValue) {
  const std::string calib = calib_quantize();
  expect_usage_error(calib + "--calib-mem 3XB", "--calib-mem 3XB: size '3XB': unknown unit 'XB'");
  expect_usage_error(calib + "--calib-mem 0", "--calib-mem 0: size '0' is not a positive number");
  expect_usage_error("quantize " + demo() + " out/never --max-shard-size ''",
                     "--max-shard-size : size '' is not a positive number");
  const fs::path dst = hlwq::test::scratch_dir("SizeOptionsNameOptionAndValue") / "synth";
  expect_usage_error("synth --like " + demo() + " " + dst.string() + " --layers 1 --max-shard-bytes 5XB",
                     "--max-shard-bytes 5XB: size '5XB': unknown unit 'XB'");
  EXPECT_FALSE(fs::exists(dst)) << "a refused synth writes nothing";
}

TEST(CliErrors, MissingPathsAreSaidToBeMissing) {
  expect_usage_error("run /no/such/model -p hi", "model directory /no/such/model does not exist");
  expect_usage_error("inspect /no/such/model", "model directory /no/such/model does not exist");
  expect_usage_error("quantize /no/such/model out/x", "source model directory /no/such/model does not exist");
  expect_usage_error("eval ppl " + demo() + " --text /no/such.txt", "--text /no/such.txt does not exist");
  expect_usage_error("eval kld " + demo() + " --base /no/base --text x", "base model directory /no/base does not exist");
  expect_usage_error("run " + demo() + " -f /no/such.txt", "-f /no/such.txt does not exist");
}

TEST(CliErrors, ABinaryTextBlamesTheText) {
  const fs::path bin = write_file("binary_text", "x.bin", std::string("abc\x90\xff\x00zz", 8));
  const CliResult r = run_hlwq("eval ppl " + demo() + " --text " + bin.string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("hlwq: error: --text " + bin.string() + ": not UTF-8 text (invalid byte 0x90 at offset 3)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("tokenizer"), std::string::npos) << r.out;
}

TEST(CliErrors, ContextHintsStayWithinTheModelsLimit) {
  // --ctx past the model's limit (4096): refused before loading, naming the limit.
  expect_usage_error("run " + demo() + " -p hi --ctx 5000", "--ctx 5000 is longer than the model's limit of 4096");
  const fs::path text = write_file("ctx_hint_eval", "t.txt", "Some text.\n");
  expect_usage_error("eval ppl " + demo() + " --text " + text.string() + " --ctx 5000",
                     "--ctx 5000 is longer than the model's limit of 4096");
  // A prompt longer than --ctx but within the limit: the hint names a --ctx that works.
  std::string words;
  for (int i = 0; i < 100; ++i) words += "word ";
  CliResult r = run_hlwq("run " + demo() + " -p '" + words + "' --ctx 16");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("the prompt of 101 tokens does not fit the context of 16: use --ctx 102 or more (the model allows up to 4096)"), std::string::npos) << r.out;
  // A prompt longer than the model's limit: the hint is to shorten it, never a --ctx the model refuses.
  std::string many;
  for (int i = 0; i < 5000; ++i) many += "word ";
  const fs::path f = write_file("ctx_hint", "long.txt", many);
  r = run_hlwq("run " + demo() + " -f " + f.string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("shorten the prompt"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("--ctx 5"), std::string::npos) << r.out;
}

TEST(CliGeneration, SeedIsRandomPrintedAndRepeatable) {
  const std::string run = "run " + demo() + " -p 'The Python interpreter' -n 24 --temp 1 -t 1";
  const CliResult a = run_hlwq(run), b = run_hlwq(run + " --seed -1");
  ASSERT_EQ(a.exit_code, 0) << a.out;
  ASSERT_EQ(b.exit_code, 0) << b.out;
  const uint64_t sa = seed_of(a.out), sb = seed_of(b.out);
  EXPECT_NE(sa, sb) << "two runs without --seed drew the same seed";
  EXPECT_LE(sb, uint64_t(INT64_MAX)) << "--seed -1 must never wrap to 2^64-1";
  // The printed seed repeats the run exactly.
  const CliResult again = run_hlwq(run + " --seed " + std::to_string(sa));
  EXPECT_EQ(generated(again.out).substr(generated(again.out).find('\n') + 1),
            generated(a.out).substr(generated(a.out).find('\n') + 1));
  EXPECT_EQ(seed_of(again.out), sa);
}

TEST(CliGeneration, GenerationConfigDefaultsUnlessGiven) {
  // A model directory whose generation_config.json asks for greedy decoding with top-k 5.
  const fs::path dir = hlwq::test::scratch_dir("gen_config") / "m";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(demo()))
    if (e.path().filename() != "generation_config.json") fs::create_symlink(e.path(), dir / e.path().filename());
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": 8187, "temperature": 0.0, "top_k": 5, "top_p": 0.8})";
  CliResult r = run_hlwq("run " + dir.string() + " -p 'The cat' -n 4");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("sampling: greedy (temperature 0) (temperature, top_k, top_p from generation_config.json)"),
            std::string::npos)
      << r.out;
  r = run_hlwq("run " + dir.string() + " -p 'The cat' -n 4 --temp 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("sampling: temperature 0.5, top-k 5, top-p 0.8 (top_k, top_p from generation_config.json)"),
            std::string::npos)
      << r.out;
  // Without the keys: hlwq's defaults.
  r = run_hlwq("run " + demo() + " -p 'The cat' -n 4");
  EXPECT_NE(r.out.find("sampling: temperature 0.7, top-k 20, top-p 0.95, seed"), std::string::npos) << r.out;
}

TEST(CliGeneration, FamiliarSpellings) {
  const fs::path f = write_file("spellings", "prompt.txt", "The Python interpreter");
  const CliResult a = run_hlwq("run -m " + demo() + " -f " + f.string() + " -n 8 --temp 0 -ngl 99 --device cpu");
  ASSERT_EQ(a.exit_code, 0) << a.out;
  EXPECT_NE(a.out.find("-ngl 99 has no effect: this run is on the CPU"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("\nThe Python interpreter"), std::string::npos) << "the prompt is echoed: " << a.out;
  const CliResult b = run_hlwq("run -m " + demo() + " -f " + f.string() + " -n 8 --temp 0 --no-display-prompt");
  ASSERT_EQ(b.exit_code, 0) << b.out;
  EXPECT_EQ(b.out.find("The Python interpreter"), std::string::npos) << b.out;
  // The same continuation either way.
  const std::string ga = generated(a.out), gb = generated(b.out);
  EXPECT_EQ(ga.substr(ga.find("The Python interpreter") + 22), gb.substr(gb.find('\n') + 1));
  expect_usage_error("run -m " + demo() + " -p x -f " + f.string(), "excludes");
}

TEST(CliGeneration, AFullContextHasItsOwnFinishReason) {
  CliResult r = run_hlwq("run " + demo() + " -p 'The cat' -n 100 --ctx 12 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("generation: 10 tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("finish: context"), std::string::npos) << r.out;
  r = run_hlwq("run " + demo() + " -p 'The cat' -n -1 --ctx 12 --temp 0");
  EXPECT_NE(r.out.find("finish: context"), std::string::npos) << r.out;
  r = run_hlwq("run " + demo() + " -p 'The cat' -n 3 --temp 0");
  EXPECT_NE(r.out.find("finish: length"), std::string::npos) << r.out;
}

TEST(CliGeneration, StatsStartTheirOwnLineWhenStreamsShareAPipe) {
  // run_hlwq captures stdout and stderr in one pipe (2>&1).
  const CliResult r = run_hlwq("run " + demo() + " -p 'The cat' -n 6 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("\nprompt: "), std::string::npos) << r.out;
  const CliResult c = run_hlwq("chat " + demo() + " -n 6 --temp 0 < <(printf 'Hello\\n')");
  ASSERT_EQ(c.exit_code, 0) << c.out;
  EXPECT_TRUE(std::regex_search(c.out, std::regex("\n\\[\\d+ tokens, [0-9.]+ tok/s, (length|stop)\\]\n"))) << c.out;
}

TEST(CliQuantize, CreatesAMissingParentOfDst) {
  const fs::path root = hlwq::test::scratch_dir("qparent");
  const fs::path dst = root / "out" / "deeper" / "q";
  CliResult r = run_hlwq("quantize -q " + demo() + " " + dst.string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(fs::exists(dst / "config.json"));
  // A failing run leaves no directories behind.
  const fs::path bad = root / "made" / "for" / "nothing";
  const fs::path empty_src = root / "empty_model";
  fs::create_directories(empty_src);
  std::ofstream(empty_src / "config.json") << "{}";
  r = run_hlwq("quantize -q " + empty_src.string() + " " + bad.string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_FALSE(fs::exists(root / "made")) << r.out;
}

TEST(CliEval, ShortTextsSayHowToFixThem) {
  const fs::path f = write_file("eval_short", "t.txt", "A short paragraph of text.\n\nAnother one here.\n");
  CliResult r = run_hlwq("eval ppl " + demo() + " --text " + f.string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("the text has (\\d+) tokens, fewer than one window of --ctx 512: "
                                                  "use --ctx \\1 or less")))
      << r.out;
  r = run_hlwq("eval ppl " + demo() + " --text " + f.string() + " --ctx 8 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_GT(nlohmann::json::parse(r.out)["windows"].get<int>(), 0);
}

TEST(CliEval, StatisticsWithUncertaintiesAndRunningValues) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "The interpreter reads a line of input and runs it, number " + std::to_string(i) + ".\n\n";
  const fs::path f = write_file("eval_stats", "t.txt", text);
  const fs::path q = hlwq::test::scratch_dir("eval_stats_q") / "q";
  ASSERT_EQ(run_hlwq("quantize -q " + demo() + " " + q.string()).exit_code, 0);
  CliResult r = run_hlwq("eval kld " + q.string() + " --base " + demo() + " --text " + f.string() + " --ctx 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["ppl_se"].get<double>(), 0);
  EXPECT_GT(j["kld"].get<double>(), 0);
  EXPECT_GT(j["kld_se"].get<double>(), 0);
  EXPECT_LT(j["kld_se"].get<double>(), j["kld"].get<double>());
  EXPECT_LE(j["kld_median"].get<double>(), j["kld_p90"].get<double>());
  EXPECT_LE(j["kld_p90"].get<double>(), j["kld_p99"].get<double>());
  EXPECT_LE(j["kld_p99"].get<double>(), j["kld_p99_9"].get<double>());
  EXPECT_LE(j["kld_p99_9"].get<double>(), j["kld_max"].get<double>());
  EXPECT_GT(j["top1_agree_se"].get<double>(), 0);
  EXPECT_LE(j["delta_p_min"].get<double>(), j["delta_p_median"].get<double>());
  EXPECT_LE(j["delta_p_median"].get<double>(), j["delta_p_max"].get<double>());
  // Human output: running per-window values while it runs, then the estimates with their errors.
  r = run_hlwq("eval kld " + q.string() + " --base " + demo() + " --text " + f.string() + " --ctx 64");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("[1]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[2]"), std::string::npos) << r.out;
  for (const char* s : {"ppl ", " ± ", "KL(base||model) mean", "99.9%", "top-1 agreement", "Δp"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in " << r.out;
}

TEST(CliInspect, JsonKeysAreIdentifiers) {
  const CliResult r = run_hlwq("inspect --json " + demo());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::regex ident("[a-z_][a-z0-9_]*");
  std::vector<const nlohmann::json*> todo{new nlohmann::json(nlohmann::json::parse(r.out))};
  const std::unique_ptr<const nlohmann::json> root(todo[0]);
  int keys = 0;
  while (!todo.empty()) {
    const nlohmann::json* j = todo.back();
    todo.pop_back();
    if (j->is_object())
      for (auto it = j->begin(); it != j->end(); ++it) {
        EXPECT_TRUE(std::regex_match(it.key(), ident)) << "key '" << it.key() << "'";
        ++keys;
        todo.push_back(&it.value());
      }
    else if (j->is_array())
      for (const auto& v : *j) todo.push_back(&v);
  }
  EXPECT_GT(keys, 20);
}

TEST(CliGeneration, TypedControlTokensAreTextInChatPrompts) {
  // The demo's template wraps the prompt in <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n. A typed
  // "<|im_end|>" must cost several text tokens, where as a control token it would cost one, like the letter "a".
  auto prompt_tokens = [](const std::string& p) {
    const CliResult r = run_hlwq("run " + demo() + " --chat -p '" + p + "' -n 1 --temp 0");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(r.out, m, std::regex("prompt: (\\d+) tokens"))) << r.out;
    return m.empty() ? 0 : std::stoi(m[1]);
  };
  EXPECT_GE(prompt_tokens("<|im_end|>") - prompt_tokens("a"), 2);
}
