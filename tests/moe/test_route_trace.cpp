// Routing traces (src/moe/route_trace.h): the generator's invariants and determinism, its reuse knob, the fitted
// defaults against the published hit rates (simulated with the expert_cache LRU policy, on a trace made with a
// seed the fit never saw) with a uniform trace as the negative control, the file format's round trip and its
// refusals, and the replay cursor's layout and wrap-around.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "core/error.h"
#include "moe/route_trace.h"

using namespace hlwq;

namespace {

RouteTraceParams small(uint64_t seed = 7) {
  RouteTraceParams p;
  p.n_layers = 3;
  p.n_experts = 64;
  p.top_k = 4;
  p.n_seqs = 2;
  p.n_steps = 50;
  p.zipf = 0.9;
  p.reuse = 0.5;
  p.seed = seed;
  return p;
}

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("hlwq_rt_") + std::to_string(::getpid()) + name))
      .string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST(RouteTrace, RowsAreDistinctInRangeAndDeterministic) {
  const RouteTrace a = generate_route_trace(small());
  ASSERT_EQ(a.ids.size(), size_t(50 * 2 * 3 * 4));
  for (int64_t r = 0; r < a.rows(); ++r)
    for (int l = 0; l < 3; ++l) {
      const auto row = a.row(r, l);
      const std::set<uint16_t> s(row.begin(), row.end());
      EXPECT_EQ(s.size(), 4u) << "row " << r << " layer " << l;
      EXPECT_LT(*s.rbegin(), 64);
    }
  EXPECT_EQ(generate_route_trace(small()).ids, a.ids);
  EXPECT_NE(generate_route_trace(small(8)).ids, a.ids);
}

TEST(RouteTrace, ReuseKeepsThePreviousStepsExperts) {
  // zipf 0 over 256 experts: a new draw repeats one of the previous 8 by chance ~3 %; reuse adds its probability
  for (double reuse : {0.0, 0.6}) {
    RouteTraceParams p = small();
    p.n_experts = 256, p.top_k = 8, p.zipf = 0, p.reuse = reuse, p.n_seqs = 1, p.n_steps = 2000;
    const RouteTrace t = generate_route_trace(p);
    int64_t kept = 0, total = 0;
    for (int64_t r = 1; r < t.rows(); ++r)
      for (int l = 0; l < p.n_layers; ++l) {
        const auto prev = t.row(r - 1, l);
        const std::set<uint16_t> s(prev.begin(), prev.end());
        for (uint16_t e : t.row(r, l)) kept += s.count(e), ++total;
      }
    const double frac = double(kept) / double(total);
    EXPECT_NEAR(frac, reuse + (1 - reuse) * 8.0 / 256.0, 0.02) << "reuse " << reuse;
  }
}

// The defaults bench uses for Qwen3.6 (256 experts, top-8): the published LRU hit rates at N/E = 12.5 % and 25 %.
TEST(RouteTrace, FittedTraceHitsThePublishedLruRates) {
  const RouteTraceFit f = fit_route_trace(256, 8, default_route_trace_targets());
  std::printf("[ fit      ] 256 experts top-8: zipf %.3f, reuse %.3f; fitting simulation %.3f at N=32, %.3f at N=64\n",
              f.zipf, f.reuse, f.achieved[0], f.achieved[1]);
  RouteTraceParams p;
  p.n_layers = 8, p.n_experts = 256, p.top_k = 8, p.n_seqs = 1, p.n_steps = 3000;
  p.zipf = f.zipf, p.reuse = f.reuse, p.seed = 12345;  // not the fit's seed
  const RouteTrace t = generate_route_trace(p);
  EXPECT_NEAR(simulate_lru_hit_rate(t, 32), 0.67, 0.02) << t.describe();
  EXPECT_NEAR(simulate_lru_hit_rate(t, 64), 0.81, 0.02) << t.describe();
  // negative control: uniform routing without reuse hits about N/E, far from the targets
  p.zipf = 0, p.reuse = 0;
  const RouteTrace u = generate_route_trace(p);
  EXPECT_NEAR(simulate_lru_hit_rate(u, 32), 32.0 / 256.0, 0.02);
  EXPECT_LT(simulate_lru_hit_rate(u, 64), 0.3);
}

TEST(RouteTrace, FileRoundTripAndRefusals) {
  const RouteTrace a = generate_route_trace(small());
  const std::string path = temp_path("ok.trace");
  write_route_trace(path, a);
  const RouteTrace b = read_route_trace(path);
  EXPECT_EQ(b.ids, a.ids);
  EXPECT_EQ(b.params.n_layers, 3);
  EXPECT_EQ(b.params.n_seqs, 2);
  EXPECT_DOUBLE_EQ(b.params.zipf, 0.9);
  EXPECT_EQ(b.params.seed, 7u);
  const std::string good = read_bytes(path);
  ASSERT_EQ(good.size(), 56 + 2 * a.ids.size());
  auto refuses = [&](std::string bytes, const char* what) {
    const std::string bad = temp_path("bad.trace");
    write_bytes(bad, bytes);
    try {
      read_route_trace(bad);
      ADD_FAILURE() << "accepted " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
    std::remove(bad.c_str());
  };
  std::string s = good;
  s[0] = 'X';
  refuses(s, "bad magic");
  refuses(good.substr(0, good.size() - 2), "truncated ids");
  refuses(good.substr(0, 20), "truncated header");
  s = good;
  s[56] = char(200);  // first id → 200 ≥ 64 experts
  s[57] = 0;
  refuses(s, "id out of range");
  s = good;
  s[58] = s[56], s[59] = s[57];  // second id of the first row = first id
  refuses(s, "duplicate id in a row");
  s = good;
  s[12] = 0, s[13] = 0, s[14] = 0, s[15] = 0;  // 0 experts
  refuses(s, "zero experts");
  // Layers, sequences and steps of 2^31 − 1 with 65535 experts, top-65535: the id count overflows 64 bits, which the
  // size check must refuse rather than wrap (fuzz_route_trace's first finding; UBSan reported the wrap).
  s = good;
  auto put_u32 = [&](size_t off, uint32_t v) { std::memcpy(s.data() + off, &v, 4); };
  put_u32(8, 0x7fffffff), put_u32(12, 65535), put_u32(16, 65535), put_u32(20, 0x7fffffff), put_u32(24, 0x7fffffff);
  refuses(s, "counts whose product overflows");
  std::remove(path.c_str());
  EXPECT_THROW(read_route_trace(temp_path("missing.trace")), Error);
}

TEST(RouteTrace, CursorIsLayerMajorAndWraps) {
  const auto tr = std::make_shared<const RouteTrace>(generate_route_trace(small()));
  RouteTraceCursor c(tr);
  const int64_t rows = tr->rows(), T = 3, k = 4, L = 3;
  std::vector<int32_t> out(size_t(L * T * k)), skip(size_t(L * (rows - 1) * k));
  c.next(rows - 1, skip);  // leave one row before the end
  c.next(T, out);
  EXPECT_EQ(c.position(), T - 1);
  for (int64_t t = 0; t < T; ++t)
    for (int l = 0; l < L; ++l)
      for (int64_t j = 0; j < k; ++j)
        EXPECT_EQ(out[size_t((l * T + t) * k + j)], tr->row((rows - 1 + t) % rows, l)[size_t(j)]);
  EXPECT_THROW(c.next(T, std::span<int32_t>(out.data(), out.size() - 1)), Error);
  c.rewind();
  EXPECT_EQ(c.position(), 0);
}

TEST(RouteTrace, GeneratorRefusesBadParameters) {
  RouteTraceParams p = small();
  p.top_k = 65;
  EXPECT_THROW(generate_route_trace(p), Error);
  p = small();
  p.reuse = 1.5;
  EXPECT_THROW(generate_route_trace(p), Error);
  p = small();
  p.n_steps = 0;
  EXPECT_THROW(generate_route_trace(p), Error);
  p = small();
  p.n_steps = p.n_seqs = p.n_layers = (1 << 30) + 1;  // 2^90 ids: refused before anything is sized
  EXPECT_THROW(generate_route_trace(p), Error);
}
