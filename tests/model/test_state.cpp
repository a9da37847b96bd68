// Sequence state: splitting a sequence across forward calls (prefill + one-token decodes, two prefill chunks)
// gives the logits of one full prefill; the scalar and AVX2 kernel sets agree on a whole model; reruns are
// bit-identical; the state refuses to grow past max_ctx.
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

TEST(SequenceState, ChunkedPromptEqualsOnePass) {
  // A long prompt runs as passes of at most max_chunk tokens: 43 = 6·7 + 1 also exercises a one-token last pass.
  constexpr int64_t kChunk = 7, kPrompt = 43;
  const Model m = Model::load(small_bf16());
  const int64_t V = m.config().vocab_size;
  const auto tok = some_tokens(kPrompt + 1, V);
  auto run = [&](int64_t max_chunk) {
    SequenceState st = m.new_state(kPrompt + 1);
    ForwardOptions opt;
    opt.max_chunk = max_chunk;
    std::vector<float> logits(size_t(2 * V));  // prompt's last token, then one decode step
    m.forward(tok.data(), kPrompt, st, logits.data(), opt);
    EXPECT_EQ(st.pos, kPrompt);
    m.forward(tok.data() + kPrompt, 1, st, logits.data() + V, opt);
    return logits;
  };
  const auto whole = run(kPrompt), chunked = run(kChunk);
  expect_same_logits(std::vector<float>(chunked.begin(), chunked.begin() + V),
                     std::vector<float>(whole.begin(), whole.begin() + V), V, kSplitRelTol, "prompt in chunks of 7");
  expect_same_logits(std::vector<float>(chunked.begin() + V, chunked.end()),
                     std::vector<float>(whole.begin() + V, whole.end()), V, kSplitRelTol, "decode after chunks");
  SequenceState st = m.new_state(kPrompt);
  ForwardOptions bad;
  bad.max_chunk = 0;
  EXPECT_THROW(m.forward(tok.data(), kPrompt, st, nullptr, bad), Error);
}

TEST(SequenceState, BadTokenLateInAChunkedPromptLeavesStateUntouched) {
  const Model m = Model::load(small_bf16());
  auto tok = some_tokens(20, m.config().vocab_size);
  tok.back() = int32_t(m.config().vocab_size);
  SequenceState st = m.new_state(20);
  ForwardOptions opt;
  opt.max_chunk = 4;
  EXPECT_THROW(m.forward(tok.data(), 20, st, nullptr, opt), Error);
  EXPECT_EQ(st.pos, 0);
}

std::string forward_error(const Model& m, SequenceState& st, const std::vector<int32_t>& tok) {
  try {
    m.forward(tok.data(), int64_t(tok.size()), st, nullptr);
  } catch (const Error& e) {
    return e.what();
  }
  return "(ran without error)";
}

TEST(SequenceState, MismatchedLayerStateIsRefused) {
  const Model m = Model::load(small_bf16());
  const auto& types = m.config().layer_types;
  const auto gdn_layer = std::find(types.begin(), types.end(), LayerKind::linear_attention) - types.begin();
  const auto attn_layer = std::find(types.begin(), types.end(), LayerKind::full_attention) - types.begin();
  ASSERT_LT(size_t(gdn_layer), types.size());
  ASSERT_LT(size_t(attn_layer), types.size());
  const auto tok = some_tokens(4, m.config().vocab_size);

  SequenceState st = m.new_state(16);
  st.layers[size_t(gdn_layer)].gdn.S.resize(st.layers[size_t(gdn_layer)].gdn.S.size() / 2);
  EXPECT_NE(forward_error(m, st, tok).find("GDN state"), std::string::npos) << forward_error(m, st, tok);
  st = m.new_state(16);
  st.layers[size_t(gdn_layer)].gdn.conv.push_back(0.f);
  EXPECT_NE(forward_error(m, st, tok).find("GDN state"), std::string::npos) << forward_error(m, st, tok);

  st = m.new_state(16);
  m.forward(tok.data(), 2, st, nullptr);
  st.layers[size_t(attn_layer)].kv.v.pop_back();  // keys and values must both cover st.pos positions
  EXPECT_NE(forward_error(m, st, tok).find("KV cache"), std::string::npos) << forward_error(m, st, tok);
  EXPECT_EQ(st.pos, 2);
}

TEST(SequenceState, ContextBeyondMaxPositionEmbeddingsIsRefused) {
  const Model m = Model::load(small_bf16());
  const int64_t max_pos = m.config().max_position_embeddings;
  ASSERT_GT(max_pos, 0);
  EXPECT_NO_THROW(m.new_state(max_pos));
  try {
    m.new_state(max_pos + 1);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_position_embeddings"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hlwq
