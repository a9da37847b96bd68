// RouteTrace generation, fitting, file I/O and replay (see route_trace.h). The generator uses its own SplitMix64
// stream and its own Zipf sampling (a CDF and a binary search), not <random>'s distributions, whose outputs are
// implementation-defined: the same parameters give the same trace on every platform.
#include "moe/route_trace.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"
#include "io/read_file.h"
#include "moe/expert_cache.h"

namespace hlwq {
namespace {

constexpr char kMagic[8] = {'H', 'L', 'W', 'Q', 'R', 'T', 'R', '1'};
constexpr size_t kHeaderBytes = 56;
constexpr size_t kMaxTraceBytes = size_t(4) << 30;

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return next() % n; }                // bias ≤ n / 2^64: irrelevant here

 private:
  uint64_t s_;
};

void check_params(const RouteTraceParams& p) {
  HLWQ_CHECK(p.n_layers >= 1 && p.n_experts >= 1 && p.n_experts <= 65535 && p.top_k >= 1 && p.top_k <= p.n_experts,
             "route trace: {} layers, {} experts, top-{} (need ≥ 1 layer, 1..65535 experts, 1 ≤ top-k ≤ experts)",
             p.n_layers, p.n_experts, p.top_k);
  HLWQ_CHECK(p.n_seqs >= 1 && p.n_steps >= 1, "route trace: {} sequences × {} steps (both must be ≥ 1)", p.n_seqs,
             p.n_steps);
  HLWQ_CHECK(std::isfinite(p.zipf) && p.zipf >= 0 && p.zipf <= 10, "route trace: zipf {} outside [0, 10]", p.zipf);
  HLWQ_CHECK(std::isfinite(p.reuse) && p.reuse >= 0 && p.reuse <= 1, "route trace: reuse {} outside [0, 1]", p.reuse);
  // The id count is multiplied up one factor at a time, each partial product checked against the limit before the
  // next factor: every factor is below 2^31, so no product of a checked partial (≤ 2^31) and a factor overflows.
  // (Multiplying all four first overflowed 64 bits for a header with counts near 2^31: a fuzzer finding.)
  constexpr int64_t kMaxIds = int64_t(kMaxTraceBytes - kHeaderBytes) / 2;
  int64_t n = 1;
  for (const int f : {p.n_steps, p.n_seqs, p.n_layers, p.top_k}) {
    n *= f;
    HLWQ_CHECK(n <= kMaxIds, "route trace: {} steps × {} sequences × {} layers × top-{} ids exceed the {} GiB limit",
               p.n_steps, p.n_seqs, p.n_layers, p.top_k, kMaxTraceBytes >> 30);
  }
}

template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T get(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof v);
  return v;
}

}  // namespace

std::string RouteTrace::describe() const {
  const RouteTraceParams& p = params;
  return fmt::format("{} experts top-{}, {} layers, {} × {} rows, zipf {:.3f}, reuse {:.3f}, seed {}", p.n_experts,
                     p.top_k, p.n_layers, p.n_seqs, p.n_steps, p.zipf, p.reuse, p.seed);
}

RouteTrace generate_route_trace(const RouteTraceParams& p) {
  check_params(p);
  RouteTrace t;
  t.params = p;
  const int E = p.n_experts, k = p.top_k, L = p.n_layers;
  t.ids.resize(size_t(int64_t(p.n_steps) * p.n_seqs * L * k));
  SplitMix64 rng(p.seed);
  // per layer: rank → expert
  std::vector<std::vector<uint16_t>> perm(static_cast<size_t>(L), std::vector<uint16_t>(static_cast<size_t>(E)));
  for (auto& q : perm) {
    std::iota(q.begin(), q.end(), uint16_t(0));
    for (int i = E - 1; i > 0; --i) std::swap(q[size_t(i)], q[size_t(rng.below(uint64_t(i) + 1))]);
  }
  std::vector<double> cdf(static_cast<size_t>(E));  // Zipf over ranks, normalized
  double acc = 0;
  for (int r = 0; r < E; ++r) cdf[size_t(r)] = acc += std::pow(double(r + 1), -p.zipf);
  for (double& c : cdf) c /= acc;
  std::vector<uint8_t> in_row(static_cast<size_t>(E), 0);
  std::vector<uint16_t> row(static_cast<size_t>(k));
  for (int64_t g = 0; g < p.n_steps; ++g)
    for (int b = 0; b < p.n_seqs; ++b)
      for (int l = 0; l < L; ++l) {
        const int64_t r = g * p.n_seqs + b;
        const uint16_t* prev = g > 0 ? t.row(r - p.n_seqs, l).data() : nullptr;
        int n = 0;
        if (prev)
          for (int j = 0; j < k; ++j)
            if (rng.uniform() < p.reuse) row[size_t(n++)] = prev[j], in_row[prev[j]] = 1;
        const auto& q = perm[size_t(l)];
        while (n < k) {
          uint16_t e = 0;
          bool found = false;
          for (int attempt = 0; attempt < 64 && !found; ++attempt) {  // rejection of repeats
            const double u = rng.uniform();
            const size_t rank = size_t(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
            e = q[std::min(rank, size_t(E - 1))];
            found = !in_row[e];
          }
          if (!found)  // a very skewed law: take the most popular expert not yet chosen
            for (int rank = 0; rank < E && !found; ++rank) e = q[size_t(rank)], found = !in_row[e];
          row[size_t(n++)] = e;
          in_row[e] = 1;
        }
        uint16_t* dst = t.ids.data() + (r * L + l) * k;
        for (int j = 0; j < k; ++j) dst[j] = row[size_t(j)], in_row[row[size_t(j)]] = 0;
      }
  return t;
}

double simulate_lru_hit_rate(const RouteTrace& t, int n_slots) {
  const RouteTraceParams& p = t.params;
  ExpertCacheConfig cfg;
  cfg.n_layers = p.n_layers;
  cfg.n_experts = p.n_experts;
  cfg.n_slots = n_slots;
  cfg.n_stream_buffers = 1;
  cfg.policy = ExpertEvictionPolicy::kLru;
  ExpertCache cache(cfg);
  std::vector<uint8_t> seen(size_t(p.n_experts), 0);
  std::vector<int32_t> batch;
  for (int64_t g = 0; g < p.n_steps; ++g)
    for (int l = 0; l < p.n_layers; ++l) {
      batch.clear();
      for (int b = 0; b < p.n_seqs; ++b)
        for (uint16_t e : t.row(g * p.n_seqs + b, l))
          if (!seen[e]) seen[e] = 1, batch.push_back(e);
      for (int32_t e : batch) seen[size_t(e)] = 0;
      cache.begin_step(l, batch);
      cache.end_step(l);
    }
  return cache.stats().hit_rate();
}

std::vector<RouteTraceTarget> default_route_trace_targets() { return {{0.125, 0.67}, {0.25, 0.81}}; }

RouteTraceFit fit_route_trace(int n_experts, int top_k, const std::vector<RouteTraceTarget>& targets) {
  HLWQ_CHECK(targets.size() == 2, "route trace fit: two targets (a small and a large cache), got {}", targets.size());
  std::vector<int> slots;
  for (const RouteTraceTarget& tg : targets) {
    HLWQ_CHECK(tg.fraction > 0 && tg.fraction <= 1 && tg.hit_rate > 0 && tg.hit_rate < 1,
               "route trace fit: target {} of the experts → {} hits must lie in (0, 1]", tg.fraction, tg.hit_rate);
    slots.push_back(std::max(1, int(std::lround(tg.fraction * n_experts))));
  }
  // A short trace of a few layers: ~50k lookups per point, so the objective's noise (~0.2 %) is below the
  // targets' precision; the same seed for every evaluation (common random numbers) keeps bisection monotone.
  RouteTraceParams p;
  p.n_layers = 4;
  p.n_experts = n_experts;
  p.top_k = top_k;
  p.n_seqs = 1;
  p.n_steps = std::max(1500, 50000 / (4 * top_k));
  p.seed = 0x5eed;
  auto hits = [&](double zipf, double reuse, int n) {
    p.zipf = zipf, p.reuse = reuse;
    return simulate_lru_hit_rate(generate_route_trace(p), n);
  };
  // zipf with the first target's hit rate at this reuse (bisection; the hit rate rises with the skew)
  auto zipf_for = [&](double reuse) {
    double lo = 0, hi = 3;
    if (hits(lo, reuse, slots[0]) >= targets[0].hit_rate) return lo;
    if (hits(hi, reuse, slots[0]) <= targets[0].hit_rate) return hi;
    for (int i = 0; i < 14; ++i) {
      const double mid = 0.5 * (lo + hi);
      (hits(mid, reuse, slots[0]) < targets[0].hit_rate ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
  };
  auto err = [&](double reuse, double& zipf) {
    zipf = zipf_for(reuse);
    const double e0 = hits(zipf, reuse, slots[0]) - targets[0].hit_rate;
    const double e1 = hits(zipf, reuse, slots[1]) - targets[1].hit_rate;
    return e0 * e0 + e1 * e1;
  };
  double best_reuse = 0, best_zipf = 0, best = INFINITY;
  for (int i = 0; i <= 19; ++i) {  // reuse 0, 0.05, …, 0.95
    double z = 0;
    const double e = err(0.05 * i, z);
    if (e < best) best = e, best_reuse = 0.05 * i, best_zipf = z;
  }
  for (double step = 0.025; step >= 0.005; step /= 2) {  // refine around the best grid point
    for (double r : {best_reuse - step, best_reuse + step}) {
      if (r < 0 || r > 0.99) continue;
      double z = 0;
      const double e = err(r, z);
      if (e < best) best = e, best_reuse = r, best_zipf = z;
    }
  }
  RouteTraceFit f;
  f.zipf = best_zipf;
  f.reuse = best_reuse;
  for (int n : slots) f.achieved.push_back(hits(best_zipf, best_reuse, n));
  return f;
}

void write_route_trace(const std::string& path, const RouteTrace& t) {
  const RouteTraceParams& p = t.params;
  check_params(p);
  HLWQ_CHECK(int64_t(t.ids.size()) == t.rows() * p.n_layers * p.top_k, "route trace: {} ids for {} rows", t.ids.size(),
             t.rows());
  std::string s(kMagic, sizeof kMagic);
  for (uint32_t v : {uint32_t(p.n_layers), uint32_t(p.n_experts), uint32_t(p.top_k), uint32_t(p.n_seqs),
                     uint32_t(p.n_steps), uint32_t(0)})
    put(s, v);
  put(s, p.zipf);
  put(s, p.reuse);
  put(s, p.seed);
  s.append(reinterpret_cast<const char*>(t.ids.data()), t.ids.size() * sizeof(uint16_t));
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  HLWQ_CHECK(fd >= 0, "{}: cannot create: {}", tmp, std::strerror(errno));
  size_t done = 0;
  bool ok = true;
  while (ok && done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += size_t(n);
  }
  const int err = errno;
  ok = ok && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok) {
    ::unlink(tmp.c_str());
    fail("{}: write failed: {}", path, std::strerror(err ? err : errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename {} into place: {}", path, tmp, std::strerror(e));
  }
}

RouteTrace read_route_trace(const std::string& path) {
  const std::string s = read_regular_file(path, kMaxTraceBytes);
  HLWQ_CHECK(s.size() >= kHeaderBytes && std::memcmp(s.data(), kMagic, sizeof kMagic) == 0,
             "{}: not a routing trace (expected the magic \"HLWQRTR1\" and a {}-byte header, file has {} bytes)", path,
             kHeaderBytes, s.size());
  RouteTrace t;
  RouteTraceParams& p = t.params;
  p.n_layers = int(get<uint32_t>(s, 8));
  p.n_experts = int(get<uint32_t>(s, 12));
  p.top_k = int(get<uint32_t>(s, 16));
  p.n_seqs = int(get<uint32_t>(s, 20));
  p.n_steps = int(get<uint32_t>(s, 24));
  HLWQ_CHECK(get<uint32_t>(s, 28) == 0, "{}: reserved header field is {}, expected 0", path, get<uint32_t>(s, 28));
  p.zipf = get<double>(s, 32);
  p.reuse = get<double>(s, 40);
  p.seed = get<uint64_t>(s, 48);
  try {
    check_params(p);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  const size_t n = size_t(int64_t(p.n_steps) * p.n_seqs * p.n_layers * p.top_k);
  HLWQ_CHECK(s.size() == kHeaderBytes + 2 * n, "{}: {} bytes, expected {} for {} steps × {} sequences × {} layers × "
             "top-{}", path, s.size(), kHeaderBytes + 2 * n, p.n_steps, p.n_seqs, p.n_layers, p.top_k);
  t.ids.resize(n);
  std::memcpy(t.ids.data(), s.data() + kHeaderBytes, 2 * n);
  std::vector<int64_t> last(size_t(p.n_experts), -1);  // row-and-layer index that last used each expert
  for (size_t i = 0; i < n; ++i) {
    const uint16_t e = t.ids[i];
    const int64_t rl = int64_t(i) / p.top_k;
    HLWQ_CHECK(e < p.n_experts, "{}: id {} at row {} layer {} is not below the {} experts", path, e,
               rl / p.n_layers, rl % p.n_layers, p.n_experts);
    HLWQ_CHECK(last[e] != rl, "{}: expert {} chosen twice by row {} layer {}", path, e, rl / p.n_layers,
               rl % p.n_layers);
    last[e] = rl;
  }
  return t;
}

void RouteTraceCursor::next(int64_t T, std::span<int32_t> out) {
  const RouteTraceParams& p = t_->params;
  const int64_t k = p.top_k, rows = t_->rows();
  HLWQ_CHECK(T >= 0 && int64_t(out.size()) >= p.n_layers * T * k, "route trace cursor: {} ids of room for {} tokens",
             out.size(), T);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = (pos_ + t) % rows;
    for (int l = 0; l < p.n_layers; ++l) {
      const std::span<const uint16_t> src = t_->row(r, l);
      int32_t* dst = out.data() + (int64_t(l) * T + t) * k;
      for (int64_t j = 0; j < k; ++j) dst[j] = src[size_t(j)];
    }
  }
  pos_ = (pos_ + T) % rows;
}

}  // namespace hlwq
