// The batched forward: sequences of different lengths and positions, prefill chunks and decode tokens mixed in one
// batch, give every sequence the logits it gets when run alone (to summation order); the paged KV cache equals a
// contiguous one whatever the block size and however fragmented the pool; a full pool or an exhausted set of slots
// refuses a request without touching any state; a forward that fails part-way poisons exactly its sequences.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/error.h"
#include "model/model.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

// Same weights and kernels: only summation orders differ (batched matmuls see more tokens, the MoE groups tokens
// of several sequences, attention work is split differently); measured ≤ 3e-6 of max |logit|.
constexpr double kBatchRelTol = 1e-4;

fs::path tiny_moe_dev() { return test::source_dir() / "models" / "tiny-moe-dev"; }
fs::path small_bf16() { return test::source_dir() / "testdata" / "tiny-random-small-bf16"; }

std::vector<int32_t> tokens_of(int64_t n, int64_t V, int64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + seed * 104729 + 13) % V);
  return t;
}

LoadOptions f32_kv(int32_t max_seqs, int64_t kv_tokens) {
  LoadOptions lo;
  lo.kv_dtype = KvDtype::f32;
  lo.max_seqs = max_seqs;
  lo.kv_tokens = kv_tokens;
  return lo;
}

// Logits [n, V] of each token of tok, run alone as one sequence.
std::vector<float> alone(const fs::path& dir, const std::vector<int32_t>& tok, LoadOptions lo) {
  Model m = Model::load(dir, lo);
  Sequence s = m.new_sequence(int64_t(tok.size()));
  std::vector<float> out(tok.size() * size_t(m.config().vocab_size));
  m.forward(tok.data(), int64_t(tok.size()), s, out.data(), forward_all_logits());
  return out;
}

void expect_rows(const std::vector<float>& got, const std::vector<float>& ref, int64_t V, const std::string& what) {
  const auto d = test::compare_logits(got, ref, V);
  EXPECT_TRUE(d.within(kBatchRelTol)) << what << ": max abs err " << d.max_abs_err << " vs max |logit| "
                                      << d.max_abs_ref << ", " << d.argmax_mismatches << " argmax mismatches";
}

// One step of a schedule: (sequence, tokens this step) in batch order.
using Step = std::vector<std::pair<int, int64_t>>;

void check_batched_equals_alone(const fs::path& dir, const std::vector<int64_t>& lens, const std::vector<Step>& steps,
                                int64_t block_tokens = 16) {
  const int n_seq = int(lens.size());
  LoadOptions lo = f32_kv(n_seq, 4096);
  lo.kv_block_tokens = block_tokens;
  Model m = Model::load(dir, lo);
  const int64_t V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> tok;
  std::vector<std::vector<float>> ref, got;
  std::vector<Sequence> seqs;
  for (int i = 0; i < n_seq; ++i) {
    tok.push_back(tokens_of(lens[size_t(i)], V, i));
    ref.push_back(alone(dir, tok.back(), f32_kv(1, 4096)));
    got.emplace_back(ref.back().size());
    seqs.push_back(m.new_sequence(lens[size_t(i)]));
  }
  for (const Step& step : steps) {
    std::vector<SeqInput> in;
    int64_t rows = 0;
    for (auto [i, n] : step) {
      const int64_t p = seqs[size_t(i)].pos();
      in.push_back({&seqs[size_t(i)], {tok[size_t(i)].data() + p, size_t(n)}, LogitsWanted::all});
      rows += n;
    }
    std::vector<float> logits(size_t(rows * V));
    m.forward_batch(in, logits.data());
    int64_t r = 0;
    for (auto [i, n] : step) {
      const int64_t p = seqs[size_t(i)].pos() - n;  // pos() has advanced past this step
      std::copy(logits.begin() + r * V, logits.begin() + (r + n) * V, got[size_t(i)].begin() + p * V);
      r += n;
    }
  }
  for (int i = 0; i < n_seq; ++i) {
    ASSERT_EQ(seqs[size_t(i)].pos(), lens[size_t(i)]) << "schedule does not finish sequence " << i;
    expect_rows(got[size_t(i)], ref[size_t(i)], V, "sequence " + std::to_string(i));
  }
}

// A: long prefill then decode; B: prefill in uneven chunks; C: starts late, one-token steps then a chunk;
// D: one token at a time throughout. Orders change between steps.
const std::vector<int64_t> kLens{30, 45, 26, 6};
const std::vector<Step> kSchedule{
    {{0, 23}, {1, 11}},
    {{1, 29}, {0, 1}, {3, 1}},
    {{2, 5}, {0, 1}, {3, 1}, {1, 1}},
    {{3, 1}, {2, 17}, {0, 1}},
    {{0, 1}, {1, 4}, {2, 1}, {3, 1}},
    {{2, 3}, {0, 3}, {3, 2}},
};

TEST(Batch, MixedPrefillAndDecodeEqualsEachSequenceAloneTinyMoeDev) {
  check_batched_equals_alone(tiny_moe_dev(), kLens, kSchedule);
}

TEST(Batch, MixedPrefillAndDecodeEqualsEachSequenceAloneTinyRandomSmall) {
  check_batched_equals_alone(small_bf16(), kLens, kSchedule);
}

// Paged KV against a contiguous cache (one block holds the whole sequence), one position per block, and a
// fragmented pool whose free list hands out blocks out of order.
TEST(Batch, PagedKvEqualsContiguous) {
  const int64_t n = 40;
  for (int64_t bt : {int64_t(1) << 16, int64_t(16), int64_t(1), int64_t(3)})
    check_batched_equals_alone(tiny_moe_dev(), {n}, {{{0, 17}}, {{0, 1}}, {{0, 22}}}, bt);
}

TEST(Batch, FragmentedPoolEqualsFreshPool) {
  LoadOptions lo = f32_kv(3, 256);
  lo.kv_block_tokens = 4;
  Model m = Model::load(tiny_moe_dev(), lo);
  const int64_t V = m.config().vocab_size;
  const auto tok = tokens_of(60, V, 7);
  {
    // interleave two sequences so their blocks alternate, then free one: the free list is now out of order
    Sequence a = m.new_sequence(64), b = m.new_sequence(64);
    for (int i = 0; i < 8; ++i) {
      m.forward(tok.data() + i * 4, 4, a, nullptr);
      m.forward(tok.data() + i * 4, 4, b, nullptr);
    }
  }
  Sequence keep = m.new_sequence(64);
  m.forward(tok.data(), 9, keep, nullptr);
  Sequence s = m.new_sequence(60);
  std::vector<float> got(size_t(60 * V));
  m.forward(tok.data(), 60, s, got.data(), forward_all_logits());
  ASSERT_NE(m.pool().blocks(s.slot())[0] + 1, m.pool().blocks(s.slot())[1]) << "pool was not fragmented";
  expect_rows(got, alone(tiny_moe_dev(), tok, f32_kv(1, 256)), V, "fragmented pool");
}

// Token choice on the backend: the CPU backend does not sample, so every row comes back −1 with its logits, the
// same logits as without the request; a request whose entries do not match the rows is refused before anything runs.
TEST(Batch, TokenChoiceOnTheCpuBackendFallsBackToLogits) {
  Model m = Model::load(small_bf16(), f32_kv(2, 64));
  const int64_t V = m.config().vocab_size;
  const auto tok = tokens_of(12, V, 4);
  Sequence a = m.new_sequence(64), b = m.new_sequence(64);
  std::vector<SeqInput> in{{&a, {tok.data(), 5}}, {&b, {tok.data() + 5, 7}}};
  std::vector<float> want(2 * size_t(V)), got(2 * size_t(V));
  m.forward_batch(in, want.data());
  a.reset(), b.reset();
  const std::vector<RowSampling> how(2);
  std::vector<int32_t> ids{5, 5};
  ForwardOptions fo;
  fo.sample = how;
  fo.ids = ids.data();
  m.forward_batch(in, got.data(), fo);
  EXPECT_EQ(ids, (std::vector<int32_t>{-1, -1}));
  EXPECT_EQ(got, want);
  fo.sample = std::span<const RowSampling>(how).first(1);  // one entry for two rows
  EXPECT_THROW(m.forward_batch(in, got.data(), fo), Error);
  EXPECT_EQ(a.pos(), 5) << "a refused batch moved a sequence";
}

TEST(Batch, FullKvPoolRefusesWithoutTouchingState) {
  Model m = Model::load(small_bf16(), f32_kv(2, 32));  // 2 blocks of 16
  const auto tok = tokens_of(20, m.config().vocab_size, 1);
  Sequence a = m.new_sequence(64), b = m.new_sequence(64);
  m.forward(tok.data(), 20, a, nullptr);  // takes both blocks
  try {
    m.forward(tok.data(), 1, b, nullptr);
    FAIL() << "no error from a full pool";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV pool is full"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b.pos(), 0);
  EXPECT_EQ(a.pos(), 20);
  // a batch that does not fit is refused whole: neither sequence moves
  std::vector<SeqInput> in{{&a, {tok.data(), 1}}, {&b, {tok.data(), 1}}};
  EXPECT_THROW(m.forward_batch(in, nullptr), Error);
  EXPECT_EQ(a.pos(), 20);
  EXPECT_EQ(b.pos(), 0);
  // closing a frees its blocks for b
  a = Sequence();
  EXPECT_NO_THROW(m.forward(tok.data(), 20, b, nullptr));
}

TEST(Batch, SlotsAndBatchLimitsAreEnforced) {
  LoadOptions lo = f32_kv(2, 256);
  lo.max_batch_tokens = 8;
  Model m = Model::load(small_bf16(), lo);
  const auto tok = tokens_of(9, m.config().vocab_size, 2);
  Sequence a = m.new_sequence(32), b = m.new_sequence(32);
  try {
    Sequence c = m.new_sequence(32);
    FAIL() << "a third sequence was opened in a pool of two";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all 2 sequence slots are in use"), std::string::npos) << e.what();
  }
  std::vector<SeqInput> too_big{{&a, {tok.data(), 5}}, {&b, {tok.data(), 4}}};
  EXPECT_THROW(m.forward_batch(too_big, nullptr), Error);
  std::vector<SeqInput> twice{{&a, {tok.data(), 1}}, {&a, {tok.data(), 1}}};
  EXPECT_THROW(m.forward_batch(twice, nullptr), Error);
  EXPECT_EQ(a.pos(), 0);
  // a single sequence longer than a batch still runs, as consecutive batches
  EXPECT_NO_THROW(m.forward(tok.data(), 9, a, nullptr));
  EXPECT_EQ(a.pos(), 9);
}

// An expert provider that fails on one layer: the forward dies after earlier layers advanced the GDN state.
class FailingProvider final : public ExpertProvider {
 public:
  explicit FailingProvider(const ModelWeights* w) : w_(w) {}
  void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override {
    if (layer == fail_layer) throw Error("expert copy failed (test)");
    for (size_t i = 0; i < ids.size(); ++i) where[i] = &w_->layers[size_t(layer)].moe.experts[size_t(ids[i])];
  }
  void release(int) override {}
  const ModelWeights* w_;
  int fail_layer = -1;
};

TEST(Batch, FailedForwardPoisonsItsSequencesUntilReset) {
  // the provider needs the weights, which exist only after load: give it the reference model's (same checkpoint)
  Model ref = Model::load(tiny_moe_dev(), f32_kv(1, 256));
  FailingProvider prov(&ref.weights());
  LoadOptions lo = f32_kv(2, 256);
  lo.experts = &prov;
  Model m = Model::load(tiny_moe_dev(), lo);
  const int64_t V = m.config().vocab_size;
  const auto tok = tokens_of(12, V, 3);
  Sequence a = m.new_sequence(64), b = m.new_sequence(64);
  m.forward(tok.data(), 4, b, nullptr);
  prov.fail_layer = 1;  // layer 0's mixer and experts have run when layer 1's experts fail
  EXPECT_THROW(m.forward(tok.data(), 6, a, nullptr), Error);
  prov.fail_layer = -1;
  try {
    m.forward(tok.data(), 1, a, nullptr);
    FAIL() << "a poisoned sequence ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unusable"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expert copy failed"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(m.forward(tok.data() + 4, 1, b, nullptr));  // b was not in the failed batch
  a.reset();
  std::vector<float> got(size_t(12 * V));
  m.forward(tok.data(), 12, a, got.data(), forward_all_logits());
  expect_rows(got, alone(tiny_moe_dev(), tok, f32_kv(1, 256)), V, "after reset");
}

// The expert provider sees exactly the experts the router chose, acquired and released once per MoE layer, and
// hints when it asks for them.
class RecordingProvider final : public ExpertProvider {
 public:
  explicit RecordingProvider(const ModelWeights* w) : w_(w) {}
  void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override {
    EXPECT_EQ(open_layer, -1) << "acquire without release";
    open_layer = layer;
    acquired[layer].assign(ids.begin(), ids.end());
    for (size_t i = 0; i < ids.size(); ++i) where[i] = &w_->layers[size_t(layer)].moe.experts[size_t(ids[i])];
  }
  void release(int layer) override {
    EXPECT_EQ(open_layer, layer);
    open_layer = -1;
  }
  bool wants_hints() const override { return true; }
  void hint(int layer, std::span<const int32_t> ids) override { hinted[layer].assign(ids.begin(), ids.end()); }
  const ModelWeights* w_;
  int open_layer = -1;
  std::map<int, std::vector<int32_t>> acquired, hinted;
};

TEST(Batch, ExpertProviderSeesTheRoutedExpertsAndHints) {
  Model ref = Model::load(tiny_moe_dev(), f32_kv(1, 64));
  RecordingProvider prov(&ref.weights());
  LoadOptions lo = f32_kv(1, 64);
  lo.experts = &prov;
  Model m = Model::load(tiny_moe_dev(), lo);
  const int64_t V = m.config().vocab_size, L = m.config().n_layers, k = m.config().n_experts_active;
  const auto tok = tokens_of(1, V, 5);
  Sequence s = m.new_sequence(8);
  std::vector<float> got(static_cast<size_t>(V));
  m.forward(tok.data(), 1, s, got.data());
  ASSERT_EQ(int64_t(prov.acquired.size()), L);
  for (const auto& [layer, ids] : prov.acquired) {
    EXPECT_EQ(int64_t(ids.size()), k) << "one token selects k distinct experts in layer " << layer;
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  }
  EXPECT_EQ(int64_t(prov.hinted.size()), L - 1);  // every layer but the first is predicted
  EXPECT_EQ(prov.hinted.count(0), 0u);
  // the hinted ids are a prediction, not the routing: they need only be valid experts, k per token
  for (const auto& [layer, ids] : prov.hinted) {
    EXPECT_EQ(int64_t(ids.size()), k);
    for (int32_t e : ids) EXPECT_TRUE(e >= 0 && e < m.config().n_experts);
  }
  // asking for hints changes nothing in the result
  Sequence r = ref.new_sequence(8);
  std::vector<float> want(static_cast<size_t>(V));
  ref.forward(tok.data(), 1, r, want.data());
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace hlwq
