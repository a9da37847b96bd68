// Prefix snapshots on the demo model. (a) A sequence resumed from a snapshot (Model::fork at a KV block boundary:
// shared KV blocks, copied GDN state) gives logits bit-identical to a fresh prefill split at the same point, and
// within summation-order tolerance of one unsplit prefill; the snapshot's source going on past the shared blocks
// disturbs neither. Then the server's engine: (b) a second client with the same system prompt resumes from the
// first one's snapshot — /metrics counts the reused tokens — with the bits of a server that never saw the first
// client; (c) tiny snapshot and KV budgets force evictions and every answer stays that of a server without a
// prefix cache; (d) a 10-turn chat continues the finished sequence at every turn, with or without snapshots, with
// the answers of a server without a prefix cache. Also the choice of snapshot boundaries.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <regex>
#include <thread>

#include "core/error.h"

#include "model/model.h"
#include "runtime/tokenizer.h"
#include "server/engine.h"
#include "server/snapshot_store.h"
#include "test_paths.h"

namespace hlwq::server {
namespace {

std::filesystem::path demo() { return test::source_dir() / "models" / "tiny-moe-dev"; }

std::vector<int32_t> tokens(int64_t n, int64_t V, int64_t salt) {
  std::vector<int32_t> t(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + salt * 104729 + 13) % V);
  return t;
}

Model load(int32_t seqs, int64_t kv_tokens, GdnMode mode = GdnMode::auto_select) {
  LoadOptions lo;
  lo.max_seqs = seqs;
  lo.kv_tokens = kv_tokens;
  lo.kv_dtype = KvDtype::f32;
  lo.gdn_mode = mode;
  return Model::load(demo().string(), lo);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(SnapshotBoundaries, IntervalBranchAndLastBlock) {
  // interval 32 (blocks of 16), branch at 40 → 32, prompt of 75 → its last full block ends at 64
  EXPECT_EQ(snapshot_boundaries(0, 75, 16, 32, 40), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(snapshot_boundaries(0, 75, 16, 0, 50), (std::vector<int64_t>{48, 64}));
  EXPECT_EQ(snapshot_boundaries(32, 80, 16, 40, 0), (std::vector<int64_t>{64, 80}));  // 40 → 32 per step; past from
  EXPECT_TRUE(snapshot_boundaries(0, 15, 16, 32, 15).empty());                        // no full block
}

TEST(SnapshotModel, ResumedSequenceIsBitIdenticalToAFreshPrefill) {
  Model m = load(4, 4 * 128);
  const int64_t V = m.config().vocab_size, B = m.options().kv_block_tokens, k = 2 * B;
  const std::vector<int32_t> p = tokens(53, V, 1), q = tokens(40, V, 2);
  const size_t tail = p.size() - size_t(k);
  std::vector<float> fresh(tail * size_t(V)), resumed(fresh.size()), again(fresh.size());
  {
    Sequence s = m.new_sequence(128);
    m.forward(p.data(), k, s, nullptr);
    m.forward(p.data() + k, int64_t(tail), s, fresh.data(), forward_all_logits());
  }
  Sequence src = m.new_sequence(128);
  m.forward(p.data(), k, src, nullptr);
  const Sequence snap = m.fork(src, k);
  EXPECT_EQ(snap.pos(), k);
  // the source goes on with other tokens: it writes only past the shared blocks
  m.forward(q.data(), int64_t(q.size()), src, nullptr);
  {
    Sequence r = m.fork(snap, 128);
    m.forward(p.data() + k, int64_t(tail), r, resumed.data(), forward_all_logits());
  }
  EXPECT_TRUE(same_bits(fresh, resumed));
  {
    // one prefill of the whole prompt differs from the split only in summation order (tests/model/test_state.cpp)
    std::vector<float> one(p.size() * size_t(V));
    Sequence s = m.new_sequence(128);
    m.forward(p.data(), int64_t(p.size()), s, one.data(), forward_all_logits());
    float diff = 0, mag = 0;
    for (size_t i = 0; i < resumed.size(); ++i) {
      diff = std::max(diff, std::abs(resumed[i] - one[size_t(k * V) + i]));
      mag = std::max(mag, std::abs(resumed[i]));
    }
    EXPECT_LE(diff, 1e-4f * mag);
  }
  src = Sequence();  // the snapshot alone holds the shared blocks now
  Sequence r = m.fork(snap, 128);
  m.forward(p.data() + k, int64_t(tail), r, again.data(), forward_all_logits());
  EXPECT_TRUE(same_bits(fresh, again));
  // negative control: a snapshot of another prefix gives other logits
  Sequence other = m.new_sequence(128);
  m.forward(q.data(), k, other, nullptr);
  Sequence wrong = m.fork(other, 128);
  m.forward(p.data() + k, int64_t(tail), wrong, again.data(), forward_all_logits());
  EXPECT_FALSE(same_bits(fresh, again));
  EXPECT_THROW(m.fork(wrong, 128), Error);  // 53 tokens: not at a block boundary
}

// An engine on its own thread, fed one request at a time.
struct Served {
  std::string text;
  std::vector<TokenLogprob> logprobs;
};

class Engine {
 public:
  // spare_slots: state slots beyond seqs that the model is loaded with (−1: one per snapshot)
  Engine(int32_t seqs, int32_t snapshots, int64_t interval, bool prefix_cache, int64_t max_len = 256,
         int32_t spare_slots = -1)
      : model_(load(seqs + (spare_slots < 0 ? snapshots : spare_slots), int64_t(seqs) * max_len)),
        tok_(Tokenizer::from_file(demo() / "tokenizer.json")),
        queue_(8, model_.pool().config().kv_blocks) {
    EngineConfig ec;
    ec.max_seqs = seqs;
    ec.max_len = max_len;
    ec.prefix_cache = prefix_cache;
    ec.snapshots = snapshots;
    ec.snapshot_interval = interval;
    thread_ = std::thread([this, ec] { run_engine(model_, tok_, ec, queue_); });
  }
  ~Engine() {
    queue_.drain();
    thread_.join();
  }
  int64_t vocab() const { return model_.config().vocab_size; }
  int32_t id(const std::string& token_text) const {
    const auto id = tok_.token_id(token_text);
    EXPECT_TRUE(id) << token_text;
    return id.value_or(0);
  }
  Served ask(const std::vector<int32_t>& prompt, int64_t max_tokens = 6) {
    Job j;
    j.req.prompt = prompt;
    j.req.max_tokens = max_tokens;
    j.req.sampler.temperature = 0;
    j.req.top_logprobs = 3;
    j.channel = std::make_shared<Channel>();
    j.arrived = Clock::now();
    auto ch = j.channel;
    EXPECT_EQ(queue_.submit(std::move(j)), RequestQueue::Submit::ok);
    Served out;
    for (;;) {
      auto ev = ch->next(std::chrono::milliseconds(60000));
      if (!ev) {
        ADD_FAILURE() << "no event within 60 s";
        return out;
      }
      if (ev->kind == StreamEvent::Kind::error) {
        ADD_FAILURE() << ev->error;
        return out;
      }
      out.text += ev->text;
      out.logprobs.insert(out.logprobs.end(), ev->logprobs.begin(), ev->logprobs.end());
      if (ev->kind == StreamEvent::Kind::finish) return out;
    }
  }
  int64_t metric(const std::string& name) {
    queue_.wait_idle();
    const std::string text = queue_.render_metrics();
    std::smatch mt;
    if (!std::regex_search(text, mt, std::regex("\n" + name + " (\\d+)\n"))) {
      ADD_FAILURE() << "no metric " << name;
      return -1;
    }
    return std::stoll(mt[1]);
  }

 private:
  Model model_;
  Tokenizer tok_;
  RequestQueue queue_;
  std::thread thread_;
};

bool same(const Served& a, const Served& b) {
  if (a.text != b.text || a.logprobs.size() != b.logprobs.size()) return false;
  for (size_t i = 0; i < a.logprobs.size(); ++i)
    if (std::memcmp(&a.logprobs[i].logprob, &b.logprobs[i].logprob, sizeof(float)) != 0 ||
        a.logprobs[i].top != b.logprobs[i].top)
      return false;
  return true;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(SnapshotEngine, SecondClientResumesFromTheSharedSystemPrompt) {
  Engine shared(2, 4, 32, true), alone(2, 4, 32, true), plain(2, 0, 0, false);
  const int64_t V = shared.vocab();
  const std::vector<int32_t> sys = tokens(70, V, 4);  // 4 full blocks and a bit
  const auto p1 = cat(sys, tokens(9, V, 5)), p2 = cat(sys, tokens(11, V, 6));
  shared.ask(p1);
  EXPECT_EQ(shared.metric("hlwq_prefix_snapshots"), 2);  // at 32 and 64: the interval's, and 64 the last full block
  const Served b = shared.ask(p2);
  EXPECT_EQ(shared.metric("hlwq_prefix_snapshot_hits_total"), 64);
  EXPECT_EQ(shared.metric("hlwq_prefix_cache_hits_total"), 64);
  EXPECT_TRUE(same(b, alone.ask(p2)));  // the same chunks on a server that never saw p1: the same bits
  EXPECT_EQ(b.text, plain.ask(p2).text);
  EXPECT_EQ(plain.metric("hlwq_prefix_cache_hits_total"), 0);
}

TEST(SnapshotEngine, EvictionsUnderTinyBudgetsStayExact) {
  {
    // a KV pool of one sequence's length (6 blocks of 16): a snapshot's blocks must go when a prompt needs them
    Engine tiny(1, 2, 0, true, 96), plain(1, 0, 0, false, 96);
    const int64_t V = tiny.vocab();
    const auto a = tokens(70, V, 7), b = tokens(75, V, 8);
    const auto a1 = cat(a, tokens(5, V, 9)), a2 = cat(a, tokens(6, V, 10)), b1 = cat(b, tokens(5, V, 11));
    EXPECT_EQ(tiny.ask(a1).text, plain.ask(a1).text);  // snapshot at 64
    EXPECT_EQ(tiny.ask(a2).text, plain.ask(a2).text);  // resumes there
    EXPECT_EQ(tiny.metric("hlwq_prefix_snapshot_hits_total"), 64);
    EXPECT_EQ(tiny.ask(b1).text, plain.ask(b1).text);  // needs 6 blocks: a's snapshot (4) is evicted
    EXPECT_EQ(tiny.metric("hlwq_prefix_snapshots"), 1);  // b1's own, at 80; a budget of 2 would have kept a's
    EXPECT_EQ(tiny.ask(a2).text, plain.ask(a2).text);
  }
  // one snapshot slot, snapshots every block: each new one evicts the last
  Engine tiny(1, 1, 16, true, 96), plain(1, 0, 0, false, 96);
  const int64_t V = tiny.vocab();
  const auto a = tokens(40, V, 12), b = tokens(50, V, 13);
  for (const auto* base : {&a, &a, &b, &b, &a, &b}) {
    const auto p = cat(*base, tokens(5, V, int64_t(tiny.metric("hlwq_prefix_cache_queries_total"))));
    EXPECT_EQ(tiny.ask(p).text, plain.ask(p).text);
    EXPECT_LE(tiny.metric("hlwq_prefix_snapshots"), 1);
  }
  EXPECT_GT(tiny.metric("hlwq_prefix_snapshot_hits_total"), 0);
}

TEST(SnapshotEngine, StoreIsCappedByTheModelsSpareStateSlots) {
  Engine capped(1, 4, 16, true, 96, 1), plain(1, 0, 0, false, 96);
  const int64_t V = capped.vocab();
  const auto p = tokens(70, V, 14);
  EXPECT_EQ(capped.ask(p).text, plain.ask(p).text);  // would have taken 4 snapshots
  EXPECT_EQ(capped.metric("hlwq_prefix_snapshots"), 1);
  const auto q = cat(tokens(64, V, 14), tokens(3, V, 15));
  EXPECT_EQ(capped.ask(q).text, plain.ask(q).text);
  EXPECT_EQ(capped.metric("hlwq_prefix_snapshot_hits_total"), 64);
}

TEST(SnapshotEngine, TenTurnChatContinuesEveryTurn) {
  // the continuation form: each turn's prompt is the last prompt, its answer and a new user turn, so the finished
  // sequence is continued (everything but the answer's last token is reused), with or without snapshots
  for (const int32_t snapshots : {0, 4}) {
    Engine cached(2, snapshots, 64, true, 512), plain(2, 0, 0, false, 512);
    const int64_t V = cached.vocab();
    std::vector<int32_t> chat = tokens(30, V, 10);
    int64_t before = 0;
    for (int turn = 0; turn < 10; ++turn) {
      const Served x = cached.ask(chat, 4);
      EXPECT_EQ(x.text, plain.ask(chat, 4).text) << "turn " << turn;
      const int64_t hits = cached.metric("hlwq_prefix_cache_hits_total");
      if (turn > 0) {
        EXPECT_EQ(hits - before, int64_t(chat.size()) - 12 - 1) << "turn " << turn;
      }
      before = hits;
      for (const TokenLogprob& lp : x.logprobs) chat.push_back(cached.id(lp.token));
      chat = cat(chat, tokens(12, V, 20 + turn));
    }
  }
}

}  // namespace
}  // namespace hlwq::server
