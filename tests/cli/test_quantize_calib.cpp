// `hlwq quantize --calib` on the small random-weight fixture: a calibrated ct-int4 and hlwq checkpoint come out,
// GPTQ quantized the linears the engine ran (the summary says how many fell back), the engine loads and runs the
// output, and the compressed-tensors output passes `hlwq inspect`'s checks; --gptq-refit runs and is reported;
// misuse is refused with exit code 2 (usage) or 1 (a calibration text too short), leaving nothing behind; so is
// --calib-device cuda where no GPU is visible (tests/cuda/test_cuda_calibration.cpp runs it where one is).
// The fixture's vocabulary is 512 ids, so the calibration text is digits in paragraphs: the Qwen tokenizer splits
// digits one by one and "\n\n" is one token, all of them among its first 512 ids.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include <cmath>

#include "cli_run.h"
#include "model/model.h"
#include "test_paths.h"

using hlwq::test::run_hlwq;
namespace fs = std::filesystem;

namespace {

struct CalibSetup {
  fs::path src, text, dir;
};

// A copy of the small fixture with a tokenizer, and a calibration text of random digit paragraphs.
CalibSetup setup(const std::string& test) {
  CalibSetup s;
  s.dir = hlwq::test::scratch_dir(test);
  s.src = s.dir / "src";
  fs::copy(hlwq::test::source_dir() / "testdata" / "tiny-random-small-bf16", s.src, fs::copy_options::recursive);
  fs::copy_file(hlwq::test::source_dir() / "testdata" / "tokenizer" / "tokenizer.json", s.src / "tokenizer.json");
  for (const auto& e : fs::recursive_directory_iterator(s.src))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  s.text = s.dir / "calib.txt";
  std::ofstream f(s.text);
  std::mt19937 rng(7);
  for (int p = 0; p < 40; ++p) {
    for (int i = 0; i < 24; ++i) f << char('0' + rng() % 10);
    f << "\n\n";
  }
  return s;
}

// The CPU engine collects the statistics (the reference; the GPU's are compared with it in
// tests/cuda/test_cuda_calibration.cpp and run through the CLI by CalibratesOnTheGpuWhereOneIsVisible).
std::string calib_args(const CalibSetup& s, const std::string& device = "cpu") {
  return " --calib " + s.text.string() + " --calib-tokens 512 --calib-ctx 64 --calib-min-tokens 16 --calib-device " +
         device;
}

TEST(QuantizeCalib, CtInt4AndHlwqAreCalibratedAndLoad) {
  const CalibSetup s = setup("quantize_calib_ok");
  for (const std::string fmt : {"ct-int4", "hlwq"}) {
    const fs::path dst = s.dir / ("out-" + fmt);
    auto r = run_hlwq("quantize -q " + s.src.string() + " " + dst.string() + " --format " + fmt + calib_args(s));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("calibration: 512 tokens (8 windows of 64) of " + s.text.string() + " on cpu"),
              std::string::npos) << r.out;
    // every linear of the layers is calibrated: GPTQ for those with enough tokens, the rest counted as fallbacks
    const size_t all = r.out.find("\nall ");
    ASSERT_NE(all, std::string::npos) << r.out;
    long gptq = 0, fallback = 0;
    ASSERT_EQ(std::sscanf(r.out.c_str() + all, "\nall %ld %ld", &gptq, &fallback), 2) << r.out;
    EXPECT_GT(gptq, 0) << r.out;
    const size_t q = r.out.find("= quantized to ");
    ASSERT_NE(q, std::string::npos);
    long n_quantized = 0;
    ASSERT_EQ(std::sscanf(r.out.c_str() + r.out.find(' ', q + 15), " %ld", &n_quantized), 1) << r.out;
    EXPECT_EQ(gptq + fallback, n_quantized) << r.out;
    // the engine loads and runs the output (in process: the fixture's vocabulary is smaller than the tokenizer's,
    // which the CLI's commands refuse)
    hlwq::LoadOptions lo;
    lo.kv_tokens = 64;
    hlwq::Model m = hlwq::Model::load(dst.string(), lo);
    hlwq::Sequence seq = m.new_sequence(64);
    const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};
    std::vector<float> logits(size_t(m.config().vocab_size));
    m.forward(ids.data(), int64_t(ids.size()), seq, logits.data());
    for (const float v : logits) ASSERT_TRUE(std::isfinite(v));
    if (fmt == "ct-int4") {
      auto i = run_hlwq("inspect " + dst.string());
      EXPECT_EQ(i.exit_code, 0) << i.out;
    }
  }
}

TEST(QuantizeCalib, CalibratesOnTheGpuWhereOneIsVisible) {
  const CalibSetup s = setup("quantize_calib_gpu");
  const fs::path dst = s.dir / "out";
  auto r = run_hlwq("quantize -q " + s.src.string() + " " + dst.string() + calib_args(s, "cuda"));
  if (r.exit_code == 2 && (r.out.find("no CUDA device is visible") != std::string::npos ||
                           r.out.find("built without CUDA") != std::string::npos)) {
    std::fprintf(stderr, "SKIPPED LOUDLY: no CUDA device\n");
    GTEST_SKIP() << "SKIPPED LOUDLY: no CUDA device";
  }
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("calibration: 512 tokens (8 windows of 64) of " + s.text.string() + " on cuda"),
            std::string::npos) << r.out;
  hlwq::LoadOptions lo;
  lo.kv_tokens = 64;
  EXPECT_NO_THROW(hlwq::Model::load(dst.string(), lo));
}

TEST(QuantizeCalib, ScaleRefitRunsAndIsReported) {
  const CalibSetup s = setup("quantize_calib_refit");
  const fs::path dst = s.dir / "out";
  auto r = run_hlwq("quantize -q " + s.src.string() + " " + dst.string() + " --format hlwq --gptq-refit 2" + calib_args(s));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("(importance-weighted, re-fit 2 rounds)"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dst / "config.json"));
}

TEST(QuantizeCalib, MisuseIsRefused) {
  const CalibSetup s = setup("quantize_calib_bad");
  const fs::path dst = s.dir / "dst";
  const std::string src = s.src.string() + " " + dst.string();
  for (const std::string& args : {src + " --calib-tokens 512", src + " --act-order", src + " --gptq-refit 1",
                                  src + " --gptq-refit 9" + calib_args(s),
                                  src + " --format hlwq-q5" + calib_args(s),
                                  src + " --act-order --gptq-scales during" + calib_args(s),
                                  src + " --calib-device cpu",  // needs --calib
                                  src + " --calib-sequential" + calib_args(s, "cuda"),
                                  src + " --calib-tokens 512 --calib-device tpu --calib " + s.text.string(),
                                  src + " --calib-gpu-memory 8GB" + calib_args(s)}) {
    auto r = run_hlwq("quantize -q " + args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_FALSE(fs::exists(dst)) << args;
  }
  // No GPU visible (hidden on a machine that has one): --calib-device cuda says so, naming the option.
  auto nogpu = run_hlwq("quantize -q " + src + calib_args(s, "cuda"), "CUDA_VISIBLE_DEVICES= ");
  EXPECT_EQ(nogpu.exit_code, 2) << nogpu.out;
  EXPECT_NE(nogpu.out.find("--calib-device cuda: "), std::string::npos) << nogpu.out;
  EXPECT_FALSE(fs::exists(dst));
  auto r = run_hlwq("quantize -q " + src + " --calib " + s.text.string() + " --calib-ctx 4096");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("do not fill one window of --calib-ctx 4096"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dst));
}

}  // namespace
