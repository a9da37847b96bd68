// Sequence state: splitting a sequence across forward calls (prefill + one-token decodes, two prefill chunks)
// gives the logits of one full prefill; the scalar and AVX2 kernel sets agree on a whole model; reruns are
// bit-identical; the state refuses to grow past max_ctx.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

// Same model and kernels, only the split (chunked vs recurrent delta rule, attention over the cache) differs.
constexpr double kSplitRelTol = 1e-4;
// Scalar vs AVX2 kernels: fp32 sums in different orders through every layer.
constexpr double kIsaRelTol = 1e-4;

fs::path small_bf16() { return test::source_dir() / "testdata" / "tiny-random-small-bf16"; }
fs::path tiny_moe_dev() { return test::source_dir() / "models" / "tiny-moe-dev"; }

std::vector<int32_t> some_tokens(int64_t n, int64_t V) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + 13) % V);
  return t;
}

// Logits [n, V] of the sequence run as pieces of the given lengths (each piece gives all its logits).
std::vector<float> run_pieces(const Model& m, const std::vector<int32_t>& tok, const std::vector<int64_t>& pieces,
                              GdnMode mode = GdnMode::auto_select) {
  const int64_t V = m.config().vocab_size;
  SequenceState st = m.new_state(int64_t(tok.size()));
  std::vector<float> out(tok.size() * size_t(V));
  int64_t t = 0;
  for (int64_t len : pieces) {
    ForwardOptions opt;
    opt.all_logits = true;
    opt.gdn_mode = mode;
    m.forward(tok.data() + t, len, st, out.data() + t * V, opt);
    t += len;
  }
  EXPECT_EQ(t, int64_t(tok.size()));
  EXPECT_EQ(st.pos, t);
  return out;
}

void expect_same_logits(const std::vector<float>& a, const std::vector<float>& b, int64_t V, double tol,
                        const std::string& what) {
  const auto d = test::compare_logits(a, b, V);
  EXPECT_TRUE(d.within(tol)) << what << ": max abs err " << d.max_abs_err << " vs max |logit| " << d.max_abs_ref
                             << ", " << d.argmax_mismatches << " argmax mismatches";
}

void check_splits(const fs::path& dir) {
  const Model m = Model::load(dir);
  const int64_t V = m.config().vocab_size;
  const auto tok = some_tokens(43, V);
  const auto full = run_pieces(m, tok, {43});
  std::vector<int64_t> decode{30};
  decode.insert(decode.end(), 13, 1);
  expect_same_logits(run_pieces(m, tok, decode), full, V, kSplitRelTol, "prefill 30 + 13 decodes");
  expect_same_logits(run_pieces(m, tok, {30, 13}), full, V, kSplitRelTol, "prefill 30 + 13");
  expect_same_logits(run_pieces(m, tok, {43}, GdnMode::recurrent), full, V, kSplitRelTol, "recurrent prefill");
  expect_same_logits(run_pieces(m, tok, {1, 41, 1}, GdnMode::chunked), full, V, kSplitRelTol, "1 + 41 + 1 chunked");
}

TEST(SequenceState, SplitsEqualOnePrefillTinyRandomSmall) { check_splits(small_bf16()); }
TEST(SequenceState, SplitsEqualOnePrefillTinyMoeDev) { check_splits(tiny_moe_dev()); }

TEST(SequenceState, LastTokenLogitsEqualAllLogitsRow) {
  const Model m = Model::load(small_bf16());
  const int64_t V = m.config().vocab_size;
  const auto tok = some_tokens(20, V);
  const auto full = run_pieces(m, tok, {20});
  SequenceState st = m.new_state(20);
  std::vector<float> last(static_cast<size_t>(V));
  m.forward(tok.data(), 20, st, last.data());
  // the one-token path uses dot products instead of the panel GEMM: same sums, different order
  expect_same_logits(last, std::vector<float>(full.end() - V, full.end()), V, kSplitRelTol, "last-token logits");
}

TEST(SequenceState, ScalarAndAvx2ModelsAgree) {
  if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  const Model a = Model::load(tiny_moe_dev(), {.isa = CpuIsa::avx2});
  const Model s = Model::load(tiny_moe_dev(), {.isa = CpuIsa::scalar});
  const int64_t V = a.config().vocab_size;
  const auto tok = some_tokens(70, V);
  expect_same_logits(run_pieces(s, tok, {70}), run_pieces(a, tok, {70}), V, kIsaRelTol, "scalar vs avx2");
}

TEST(SequenceState, RerunIsBitIdentical) {
  const Model m = Model::load(tiny_moe_dev());
  const auto tok = some_tokens(100, m.config().vocab_size);
  EXPECT_EQ(run_pieces(m, tok, {100}), run_pieces(m, tok, {100}));
}

TEST(SequenceState, RefusesToPassMaxCtxAndBadTokens) {
  const Model m = Model::load(small_bf16());
  SequenceState st = m.new_state(8);
  const auto tok = some_tokens(9, m.config().vocab_size);
  try {
    m.forward(tok.data(), 9, st, nullptr);
    FAIL() << "no error past max_ctx";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_ctx 8"), std::string::npos) << e.what();
  }
  const int32_t bad = int32_t(m.config().vocab_size);
  EXPECT_THROW(m.forward(&bad, 1, st, nullptr), Error);
}

}  // namespace
}  // namespace hlwq
