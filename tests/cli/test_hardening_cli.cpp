// End-to-end hardening checks on the demo model (issue 11): eval refuses non-regular text files and checks
// --ctx against the model before sizing anything from it; a model whose logits are NaN makes `eval` fail and
// `run` stop with the cause named, instead of printing nan or sampling garbage.
#include <gtest/gtest.h>

#include <fstream>

#include "cli_run.h"
#include "io/safetensors.h"
#include "test_paths.h"

using hlwq::test::run_hlwq;
namespace fs = std::filesystem;

namespace {

fs::path demo() { return hlwq::test::source_dir() / "models/tiny-moe-dev"; }

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HLWQ_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HLWQ_UNDER_ASAN 1
#endif

}  // namespace

TEST(HardeningCli, EvalTextMustBeARegularFile) {
  auto r = run_hlwq("eval ppl " + demo().string() + " --text /dev/zero", "ulimit -t 30;");
  EXPECT_EQ(r.exit_code, 2) << r.out;  // refused by the command line before the model loads
  EXPECT_NE(r.out.find("--text /dev/zero is not a regular file"), std::string::npos) << r.out;
}

TEST(HardeningCli, EvalContextIsCheckedBeforeAllocating) {
  const fs::path text = hlwq::test::scratch_dir("eval_ctx") / "text.txt";
  {
    std::ofstream f(text);
    for (int k = 0; k < 120000; ++k) f << "a ";
  }
  // 100,000 x 8,192 logits would be 3.3 GB per thread; with the address space capped, allocating before the
  // check fails with bad_alloc instead of this message. (ASan reserves terabytes of shadow: no cap there.)
#ifdef HLWQ_UNDER_ASAN
  const std::string cap;
#else
  const std::string cap = "ulimit -v 2000000;";
#endif
  auto r = run_hlwq("eval ppl " + demo().string() + " --text " + text.string() + " --ctx 100000 -t 2", cap);
  EXPECT_EQ(r.exit_code, 2) << r.out;  // refused by the command line before anything is sized
  EXPECT_NE(r.out.find("longer than the model's limit of 4096 tokens"), std::string::npos) << r.out;
}

TEST(HardeningCli, NonFiniteLogitsFailEvalAndRun) {
  const fs::path dir = hlwq::test::scratch_dir("nan_model") / "m";
  fs::copy(demo(), dir, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(dir))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  // The final norm's weights become NaN: every logit is then NaN.
  const std::string name = "model.norm.weight";
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    uint64_t at = 0, bytes = 0;
    {
      hlwq::SafetensorsFile f(e.path().string());
      const hlwq::TensorEntry* t = f.find(name);
      if (!t) continue;
      uint64_t hlen = 0;
      std::ifstream in(e.path(), std::ios::binary);
      in.read(reinterpret_cast<char*>(&hlen), 8);
      at = 8 + hlen + t->begin;
      bytes = t->end - t->begin;
    }
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(at));
    for (uint64_t k = 0; k < bytes; k += 2) f.write("\xc0\x7f", 2);  // bf16 NaN
  }
  const fs::path text = dir.parent_path() / "text.txt";
  {
    std::ofstream f(text);
    for (int k = 0; k < 200; ++k) f << "The quick brown fox. ";
  }
  auto r = run_hlwq("eval ppl " + dir.string() + " --text " + text.string() + " --ctx 64");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("not finite"), std::string::npos) << r.out;
  r = run_hlwq("run " + dir.string() + " -p hello -n 4");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("non-finite logits"), std::string::npos) << r.out;
}
