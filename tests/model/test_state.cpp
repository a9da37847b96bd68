// Sequence state: splitting a sequence across forward calls (prefill + one-token decodes, two prefill chunks)
// gives the logits of one full prefill; the scalar and AVX2 kernel sets agree on a whole model; reruns are
// bit-identical; a sequence refuses to grow past its max_len.
#include <gtest/gtest.h>

#include <algorithm>
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

Model load(const fs::path& dir, LoadOptions lo = {}) {
  lo.kv_dtype = KvDtype::f32;  // the reference configuration (docs/numerics.md); bf16 KV has its own tests
  return Model::load(dir, lo);
}

LoadOptions with_mode(GdnMode mode) {
  LoadOptions lo;
  lo.gdn_mode = mode;
  return lo;
}

// Logits [n, V] of the sequence run as pieces of the given lengths (each piece gives all its logits).
std::vector<float> run_pieces(Model& m, const std::vector<int32_t>& tok, const std::vector<int64_t>& pieces) {
  const int64_t V = m.config().vocab_size;
  Sequence st = m.new_sequence(int64_t(tok.size()));
  std::vector<float> out(tok.size() * size_t(V));
  int64_t t = 0;
  for (int64_t len : pieces) {
    m.forward(tok.data() + t, len, st, out.data() + t * V, forward_all_logits());
    t += len;
  }
  EXPECT_EQ(t, int64_t(tok.size()));
  EXPECT_EQ(st.pos(), t);
  return out;
}

void expect_same_logits(const std::vector<float>& a, const std::vector<float>& b, int64_t V, double tol,
                        const std::string& what) {
  const auto d = test::compare_logits(a, b, V);
  EXPECT_TRUE(d.within(tol)) << what << ": max abs err " << d.max_abs_err << " vs max |logit| " << d.max_abs_ref
                             << ", " << d.argmax_mismatches << " argmax mismatches";
}

void check_splits(const fs::path& dir) {
  Model m = load(dir);
  const int64_t V = m.config().vocab_size;
  const auto tok = some_tokens(43, V);
  const auto full = run_pieces(m, tok, {43});
  std::vector<int64_t> decode{30};
  decode.insert(decode.end(), 13, 1);
  expect_same_logits(run_pieces(m, tok, decode), full, V, kSplitRelTol, "prefill 30 + 13 decodes");
  expect_same_logits(run_pieces(m, tok, {30, 13}), full, V, kSplitRelTol, "prefill 30 + 13");
  Model rec = load(dir, with_mode(GdnMode::recurrent)), chk = load(dir, with_mode(GdnMode::chunked));
  expect_same_logits(run_pieces(rec, tok, {43}), full, V, kSplitRelTol, "recurrent prefill");
  expect_same_logits(run_pieces(chk, tok, {1, 41, 1}), full, V, kSplitRelTol, "1 + 41 + 1 chunked");
}

TEST(SequenceState, SplitsEqualOnePrefillTinyRandomSmall) { check_splits(small_bf16()); }
TEST(SequenceState, SplitsEqualOnePrefillTinyMoeDev) { check_splits(tiny_moe_dev()); }

TEST(SequenceState, LastTokenLogitsEqualAllLogitsRow) {
  Model m = load(small_bf16());
  const int64_t V = m.config().vocab_size;
  const auto tok = some_tokens(20, V);
  const auto full = run_pieces(m, tok, {20});
  Sequence st = m.new_sequence(20);
  std::vector<float> last(static_cast<size_t>(V));
  m.forward(tok.data(), 20, st, last.data());
  // the one-token path uses dot products instead of the panel GEMM: same sums, different order
  expect_same_logits(last, std::vector<float>(full.end() - V, full.end()), V, kSplitRelTol, "last-token logits");
}

TEST(SequenceState, ScalarAndAvx2ModelsAgree) {
  if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  Model a = load(tiny_moe_dev(), {.isa = CpuIsa::avx2});
  Model s = load(tiny_moe_dev(), {.isa = CpuIsa::scalar});
  const int64_t V = a.config().vocab_size;
  const auto tok = some_tokens(70, V);
  expect_same_logits(run_pieces(s, tok, {70}), run_pieces(a, tok, {70}), V, kIsaRelTol, "scalar vs avx2");
}

TEST(SequenceState, RerunIsBitIdentical) {
  Model m = load(tiny_moe_dev());
  const auto tok = some_tokens(100, m.config().vocab_size);
  EXPECT_EQ(run_pieces(m, tok, {100}), run_pieces(m, tok, {100}));
}

TEST(SequenceState, RefusesToPassMaxLenAndBadTokens) {
  Model m = load(small_bf16());
  Sequence st = m.new_sequence(8);
  const auto tok = some_tokens(9, m.config().vocab_size);
  try {
    m.forward(tok.data(), 9, st, nullptr);
    FAIL() << "no error past max_len";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_len 8"), std::string::npos) << e.what();
  }
  const int32_t bad = int32_t(m.config().vocab_size);
  EXPECT_THROW(m.forward(&bad, 1, st, nullptr), Error);
  EXPECT_EQ(st.pos(), 0);
}

TEST(SequenceState, ChunkedPromptEqualsOnePass) {
  // A long prompt runs as batches of at most max_batch_tokens: 43 = 6·7 + 1 also exercises a one-token last batch.
  constexpr int64_t kChunk = 7, kPrompt = 43;
  const int64_t V = load(small_bf16()).config().vocab_size;
  const auto tok = some_tokens(kPrompt + 1, V);
  auto run = [&](int64_t max_batch) {
    Model m = load(small_bf16(), {.max_batch_tokens = max_batch});
    Sequence st = m.new_sequence(kPrompt + 1);
    std::vector<float> logits(size_t(2 * V));  // prompt's last token, then one decode step
    m.forward(tok.data(), kPrompt, st, logits.data());
    EXPECT_EQ(st.pos(), kPrompt);
    m.forward(tok.data() + kPrompt, 1, st, logits.data() + V);
    return logits;
  };
  const auto whole = run(kPrompt), chunked = run(kChunk);
  expect_same_logits(std::vector<float>(chunked.begin(), chunked.begin() + V),
                     std::vector<float>(whole.begin(), whole.begin() + V), V, kSplitRelTol, "prompt in chunks of 7");
  expect_same_logits(std::vector<float>(chunked.begin() + V, chunked.end()),
                     std::vector<float>(whole.begin() + V, whole.end()), V, kSplitRelTol, "decode after chunks");
  EXPECT_THROW(load(small_bf16(), {.max_batch_tokens = 0}), Error);
}

TEST(SequenceState, BadTokenLateInAChunkedPromptLeavesStateUntouched) {
  Model m = load(small_bf16(), {.max_batch_tokens = 4});
  auto tok = some_tokens(20, m.config().vocab_size);
  tok.back() = int32_t(m.config().vocab_size);
  Sequence st = m.new_sequence(20);
  EXPECT_THROW(m.forward(tok.data(), 20, st, nullptr), Error);
  EXPECT_EQ(st.pos(), 0);
  EXPECT_NO_THROW(m.forward(tok.data(), 19, st, nullptr));  // the refusal did not poison the sequence
}

TEST(SequenceState, ContextBeyondMaxPositionEmbeddingsIsRefused) {
  Model m = load(small_bf16());
  const int64_t max_pos = m.config().max_position_embeddings;
  ASSERT_GT(max_pos, 0);
  EXPECT_NO_THROW(m.new_sequence(max_pos));
  try {
    m.new_sequence(max_pos + 1);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_position_embeddings"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hlwq
