// Evaluation memory: `hlwq eval ppl` keeps hidden states and makes logits a few rows at a time, so a Qwen3.6-sized
// vocabulary (248,320) stays far below the [ctx, V] fp32 that materializing a window's logits needs (1 GB at
// --ctx 1024, 4 GB at 4096). Measured as the peak RSS of the hlwq process (wait4) on a synthetic model: the demo
// model with its embedding and lm_head widened to 248,320 rows. The test runs --ctx 1024 (scoring 4096 positions
// of a 248k vocabulary is ~0.5 TFLOP, too slow for CI); the logit buffer does not grow with ctx (a --ctx 4096 run
// of this test passed the same bound during development; its RSS was not recorded).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "io/hf_config.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kBigVocab = 248320;  // Qwen3.6's vocabulary
// Peak RSS bound. Expected: mmapped embedding + lm_head (2 × 127 MB, all touched), one chunk of logits (64 MB,
// kEvalLogitBytes), hidden states [1024, 256] fp32 (1 MB), the demo model's other weights and workspace
// (~60 MB): ≈ 380 MB expected, 254 MB measured (not every lm_head page is resident at once). 600 MB fails a
// [ctx, V] buffer (1 GB).
constexpr int64_t kMaxRssBytes = int64_t(600) << 20;

struct ChildRun {
  int exit_code = -1;
  int64_t max_rss_bytes = 0;
};

ChildRun run_measured(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, int64_t(ru.ru_maxrss) * 1024};
}

TEST(EvalMemory, LargeVocabularyLongContextStaysBounded) {
  const fs::path src = test::source_dir() / "models" / "tiny-moe-dev";
  const fs::path dir = test::scratch_dir("eval-memory") / "big-vocab";
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.f, 0.02f);
  test::write_edited_checkpoint(src, dir, [&](test::EditedTensor& t) {
    if (!t.spec.name.ends_with("embed_tokens.weight") && t.spec.name != "lm_head.weight") return true;
    const int64_t H = t.spec.shape[1];
    t.spec.shape = {kBigVocab, H};
    t.bytes.resize(size_t(kBigVocab * H) * 2);
    auto* w = reinterpret_cast<uint16_t*>(t.bytes.data());
    for (int64_t i = 0; i < kBigVocab * H; ++i) w[i] = f32_to_bf16(n(rng));
    return true;
  });
  nlohmann::json cfg = read_json_file((src / "config.json").string());
  cfg["vocab_size"] = kBigVocab;
  cfg["max_position_embeddings"] = std::max<int64_t>(cfg.value("max_position_embeddings", 0), 4096);
  std::ofstream(dir / "config.json") << cfg.dump();
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(src / f, dir / f, fs::copy_options::overwrite_existing);
  // ≥ 1024 tokens of text
  const fs::path text = dir.parent_path() / "text.txt";
  {
    std::ofstream out(text);
    for (int i = 0; i < 600; ++i)
      out << "The interpreter reads each line of the program, compiles it to bytecode and runs it " << i << ".\n\n";
  }
  const ChildRun r = run_measured({test::hlwq_binary().string(), "eval", "ppl", dir.string(), "--text", text.string(),
                                   "--ctx", "1024", "--max-windows", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0);
  ::testing::Test::RecordProperty("max_rss_mb", std::to_string(r.max_rss_bytes >> 20));
  std::printf("hlwq eval ppl, V = %lld, ctx 1024: peak RSS %lld MB\n", (long long)kBigVocab,
              (long long)(r.max_rss_bytes >> 20));
  EXPECT_LE(r.max_rss_bytes, kMaxRssBytes) << "peak RSS " << (r.max_rss_bytes >> 20) << " MB";
}

}  // namespace
}  // namespace hlwq
