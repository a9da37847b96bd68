// Routing-trace replay on the CPU backend (Backend::set_route_trace): the experts each MoE layer acquires are
// exactly the distinct experts of the trace's rows for that batch (a prefill of 20 tokens takes rows 0..19, then
// each decode step the next row), replay is deterministic, clearing the trace restores the model's routing, and
// a trace of the wrong shape is refused. Negative control: the model's own routing does not acquire the trace's
// experts, so the equality is not vacuous.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "backend/cpu/mapped_experts.h"
#include "core/error.h"
#include "model/model.h"
#include "test_paths.h"

namespace hlwq {
namespace {

std::filesystem::path tiny_moe_dev() { return test::source_dir() / "models" / "tiny-moe-dev"; }

// Passes requests through and records them: per acquire, (layer, ids).
class RecordingProvider final : public ExpertProvider {
 public:
  void set_inner(ExpertProvider* p) { inner_ = p; }
  void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override {
    log.push_back({layer, std::vector<int32_t>(ids.begin(), ids.end())});
    inner_->acquire(layer, ids, where);
  }
  void release(int layer) override { inner_->release(layer); }
  struct Entry {
    int layer;
    std::vector<int32_t> ids;
  };
  std::vector<Entry> log;

 private:
  ExpertProvider* inner_ = nullptr;
};

// Distinct experts of trace rows [r0, r0 + n) in layer l, ascending (what a backend acquires for that batch).
std::vector<int32_t> expected_ids(const RouteTrace& t, int64_t r0, int64_t n, int l) {
  std::vector<int32_t> v;
  for (int64_t r = r0; r < r0 + n; ++r)
    for (uint16_t e : t.row(r % t.rows(), l)) v.push_back(e);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

struct RunResult {
  std::vector<RecordingProvider::Entry> log;
  std::vector<float> logits;  // the last step's
};

RunResult run(Model& m, RecordingProvider& rec, int steps) {
  const int64_t V = m.config().vocab_size;
  std::vector<int32_t> prompt(20);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919 + 11) % size_t(V));
  Sequence s = m.new_sequence(64);
  std::vector<float> row(static_cast<size_t>(V));
  rec.log.clear();
  m.forward(prompt.data(), int64_t(prompt.size()), s, row.data());
  for (int i = 0; i < steps; ++i) {
    const int32_t next = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    m.forward(&next, 1, s, row.data());
  }
  return {rec.log, row};
}

TEST(RouteReplay, CpuAcquiresExactlyTheTracesExperts) {
  RecordingProvider rec;
  LoadOptions lo;
  lo.experts = &rec;
  Model m = Model::load(tiny_moe_dev().string(), lo);
  MappedExpertProvider mapped(m.weights());
  rec.set_inner(&mapped);
  const ModelConfig& c = m.config();
  const int L = int(c.n_layers);
  RouteTraceParams p;
  p.n_layers = L, p.n_experts = int(c.n_experts), p.top_k = int(c.n_experts_active);
  p.n_seqs = 1, p.n_steps = 16;  // shorter than prompt + steps: the cursor wraps
  p.zipf = 0.7, p.reuse = 0.4, p.seed = 3;
  const auto trace = std::make_shared<const RouteTrace>(generate_route_trace(p));

  const RunResult own = run(m, rec, 4);
  m.backend().set_route_trace(trace);
  const RunResult a = run(m, rec, 4);
  m.backend().set_route_trace(trace);  // rewinds
  const RunResult b = run(m, rec, 4);
  m.backend().set_route_trace(nullptr);
  const RunResult back = run(m, rec, 4);

  ASSERT_EQ(a.log.size(), size_t(5 * L));  // the prompt in one batch, then 4 steps; one acquire per layer each
  int differs_from_own = 0;
  for (size_t i = 0; i < a.log.size(); ++i) {
    const int64_t batch = int64_t(i) / L, l = int64_t(i) % L;
    const int64_t r0 = batch == 0 ? 0 : 20 + batch - 1, n = batch == 0 ? 20 : 1;
    EXPECT_EQ(a.log[i].layer, l);
    EXPECT_EQ(a.log[i].ids, expected_ids(*trace, r0, n, int(l))) << "batch " << batch << " layer " << l;
    differs_from_own += own.log[i].ids != a.log[i].ids;
  }
  EXPECT_GT(differs_from_own, L) << "the model's own routing should not pick the trace's experts";
  EXPECT_TRUE(a.logits == b.logits) << "replay is not deterministic";
  EXPECT_FALSE(a.logits == own.logits) << "the replayed experts did not change the computation";
  EXPECT_TRUE(back.logits == own.logits) << "clearing the trace did not restore the model's routing";

  p.top_k += 1;
  EXPECT_THROW(m.backend().set_route_trace(std::make_shared<const RouteTrace>(generate_route_trace(p))), Error);
}

}  // namespace
}  // namespace hlwq
