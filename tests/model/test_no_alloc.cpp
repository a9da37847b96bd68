// A forward allocates nothing: this test binary replaces the global operator new with one that counts calls while
// counting is on, then runs prefill, decode and a mixed batch on a loaded model (after one warm-up of each, so
// lazily built library state does not count). Its own executable, since the replacement is process-wide.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "model/model.h"
#include "test_paths.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_news{0};
}  // namespace

void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace hlwq {
namespace {

TEST(NoAlloc, ForwardAllocatesNothing) {
  LoadOptions lo;
  lo.max_seqs = 3;
  lo.kv_tokens = 3 * 256;
  lo.max_batch_tokens = 64;
  Model m = Model::load((test::source_dir() / "models" / "tiny-moe-dev").string(), lo);
  const int64_t V = m.config().vocab_size;
  std::vector<int32_t> tok(200);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t((i * 7919 + 13) % size_t(V));
  std::vector<float> logits(size_t(100 * V));  // [100, V]: the all-logits call below
  Sequence a = m.new_sequence(256), b = m.new_sequence(256), c = m.new_sequence(256);
  auto run = [&](int64_t off) {
    m.forward(tok.data() + off, 64, a, logits.data());                         // one full batch of prefill
    m.forward(tok.data() + off, 100, b, logits.data(), forward_all_logits());  // two batches, all logits
    SeqInput in[] = {{&a, {tok.data() + off, 1}}, {&b, {tok.data(), 1}}, {&c, {tok.data() + off, 30}}};
    m.forward_batch(in, logits.data());                                        // decode + prefill mixed
    m.forward(tok.data(), 1, c, logits.data());                                // one decode token
  };
  run(0);  // warm-up
  g_news = 0;
  g_counting = true;
  run(1);
  g_counting = false;
  EXPECT_EQ(g_news.load(), 0) << "operator new was called inside forward";
  // the counter works: a vector allocates
  g_counting = true;
  std::vector<int> probe(10);
  g_counting = false;
  EXPECT_GT(g_news.load(), 0);
}

}  // namespace
}  // namespace hlwq
