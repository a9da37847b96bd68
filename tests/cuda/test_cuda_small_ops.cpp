// Small device ops against their CPU references: zero-centred RMSNorm (with the fused residual add; its fused fragments
// and MoE sum against the unfused ops), the gated RMSNorm (and the GEMM fragments it can write), embedding, greedy
// argmax (ties, NaN) and top-k/top-p/min-p sampling vs the CPU sampler's candidates and draw, on a 248,320-entry
// vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "backend/cuda/embedding.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/moe_route.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/sampling.cuh"
#include "core/dtype.h"
#include "cuda_test_util.h"
#include "error_budgets.h"
#include "backend/cpu/norm.h"
#include "runtime/sampler.h"

namespace hlwq {
namespace {

using cuda::DeviceBuffer;

TEST(CudaNorm, ZeroCentredWithResidualMatchesCpu) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(50);
  const int64_t n = 9, d = 2048;
  const auto h = test::random_f32(size_t(n * d), -4.f, 4.f, rng), res = test::random_f32(size_t(n * d), -1.f, 1.f, rng);
  const auto w = test::random_f32(size_t(d), -0.5f, 0.5f, rng);
  std::vector<float> hsum(h), ref(size_t(n * d));
  for (size_t i = 0; i < hsum.size(); ++i) hsum[i] += res[i];
  rmsnorm_zero_centred(hsum.data(), w.data(), n, d, 1e-6f, ref.data());
  DeviceBuffer<float> dh(h, "h"), dr(res, "res"), dw(w, "w"), dy(size_t(n * d), "y");
  cuda::rmsnorm_zero_centred(dh.get(), dr.get(), dw.get(), n, d, 1e-6f, dy.get(), nullptr);
  EXPECT_REL(dy.download(), ref, test::kFp32Rel);
  EXPECT_REL(dh.download(), hsum, test::kFp32Rel);  // the residual stream was updated
}

TEST(CudaNorm, GatedMatchesCpu) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(51);
  const int64_t n = 64, d = 128;
  auto x = test::random_f32(size_t(n * d), -2.f, 2.f, rng);
  const auto z = test::random_f32(size_t(n * d), -3.f, 3.f, rng), w = test::random_f32(size_t(d), 0.5f, 1.5f, rng);
  DeviceBuffer<float> dx(x, "x"), dz(z, "z"), dw(w, "w");
  rmsnorm_gated(x.data(), z.data(), w.data(), n, d, 1e-6f);
  cuda::rmsnorm_gated(dx.get(), dz.get(), 4 * d, dw.get(), n / 4, 4, d, 1e-6f, nullptr);  // as [16 rows, 4 heads]
  EXPECT_REL(dx.download(), x, test::kFp32Rel);
}

// The gated norm writing the out-projection's fragments: x as before, fragments bit for bit pack_activations of x.
TEST(CudaNorm, GatedFragmentsEqualPackOfOutput) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(58);
  for (const auto& [n, heads, d, in_pad] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 32, 128, 4096},
                                            {3, 4, 128, 512}, {17, 3, 96, 384}}) {
    SCOPED_TRACE(testing::Message() << "n=" << n << " heads=" << heads << " d=" << d << " in_pad=" << in_pad);
    const int64_t cols = heads * d;
    const auto x = test::random_f32(size_t(n * cols), -2.f, 2.f, rng), z = test::random_f32(size_t(n * cols), -3.f, 3.f, rng);
    const auto w = test::random_f32(size_t(d), 0.5f, 1.5f, rng);
    const size_t words = size_t(cuda::xfrag_words(n, in_pad));
    DeviceBuffer<float> dx(x, "x"), dx2(x, "x"), dz(z, "z"), dw(w, "w");
    DeviceBuffer<uint32_t> xf(std::vector<uint32_t>(words, 0x7fc07fc0u), "fragments"), ref(words, "packed x");
    cuda::rmsnorm_gated(dx.get(), dz.get(), cols, dw.get(), n, heads, d, 1e-6f, nullptr, xf.get(), in_pad);
    cuda::rmsnorm_gated(dx2.get(), dz.get(), cols, dw.get(), n, heads, d, 1e-6f, nullptr);
    cuda::pack_activations(dx2.get(), cols, n, cols, nullptr, n, in_pad, ref.get(), nullptr);
    EXPECT_EQ(dx.download(), dx2.download());
    EXPECT_EQ(xf.download(), ref.download());
  }
  // a head whose columns do not start a 32-column chunk cannot be written in whole units: refused
  DeviceBuffer<float> b(size_t(400), "b");
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(1, 512)), "fragments");
  EXPECT_ANY_THROW(cuda::rmsnorm_gated(b.get(), b.get(), 400, b.get(), 1, 4, 100, 1e-6f, nullptr, xf.get(), 512));
}

// The norm writing the next GEMM's fragments: h and y as without, fragments bit for bit pack_activations of y, with
// rows n..round16(n) and columns d..in_pad zero (the buffer starts as NaN pairs, so a unit left unwritten shows).
TEST(CudaNorm, ZeroCentredFragmentsEqualPackOfOutput) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(59);
  for (const auto& [n, d, in_pad] : {std::tuple<int64_t, int64_t, int64_t>{1, 2048, 2048}, {3, 2048, 2176},
                                     {17, 96, 256}}) {
    SCOPED_TRACE(testing::Message() << "n=" << n << " d=" << d << " in_pad=" << in_pad);
    const auto h = test::random_f32(size_t(n * d), -4.f, 4.f, rng), res = test::random_f32(size_t(n * d), -1.f, 1.f, rng);
    const auto w = test::random_f32(size_t(d), -0.5f, 0.5f, rng);
    const size_t words = size_t(cuda::xfrag_words(n, in_pad));
    DeviceBuffer<float> dh(h, "h"), dh2(h, "h"), dr(res, "res"), dw(w, "w"), dy(size_t(n * d), "y"), dy2(size_t(n * d), "y");
    DeviceBuffer<uint32_t> xf(std::vector<uint32_t>(words, 0x7fc07fc0u), "fragments"), ref(words, "packed y");
    cuda::rmsnorm_zero_centred(dh.get(), dr.get(), dw.get(), n, d, 1e-6f, dy.get(), nullptr,
                               {nullptr, 0, xf.get(), in_pad});
    cuda::rmsnorm_zero_centred(dh2.get(), dr.get(), dw.get(), n, d, 1e-6f, dy2.get(), nullptr);
    cuda::pack_activations(dy2.get(), d, n, d, nullptr, n, in_pad, ref.get(), nullptr);
    EXPECT_EQ(dh.download(), dh2.download());
    EXPECT_EQ(dy.download(), dy2.download());
    EXPECT_EQ(xf.download(), ref.download());
  }
  // fragments are written in whole 32-column units, into whole 128-column groups: other shapes are refused
  DeviceBuffer<float> b(size_t(4 * 100), "b");
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(4, 256)), "fragments");
  EXPECT_ANY_THROW(cuda::rmsnorm_zero_centred(b.get(), nullptr, b.get(), 4, 100, 1e-6f, b.get(), nullptr,
                                              {nullptr, 0, xf.get(), 256}));
  EXPECT_ANY_THROW(cuda::rmsnorm_zero_centred(b.get(), nullptr, b.get(), 1, 96, 1e-6f, b.get(), nullptr,
                                              {nullptr, 0, xf.get(), 96}));
}

// moe_combine fused into the norm after it: the slot outputs summed in each token's slot order, then added to h,
// are bit for bit moe_combine followed by the residual norm (slots out of order, a slot read by two tokens' lists
// is not possible in a plan, so each token has its own).
TEST(CudaNorm, SlotResidualEqualsCombineThenNorm) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(60);
  const int64_t T = 5, A = 9, d = 2048, slots = 64;
  std::vector<int> perm(static_cast<size_t>(slots));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const std::vector<int> tok_slot(perm.begin(), perm.begin() + T * A);
  const auto y = test::random_f32(size_t(slots * d), -2.f, 2.f, rng), h = test::random_f32(size_t(T * d), -4.f, 4.f, rng);
  const auto w = test::random_f32(size_t(d), -0.5f, 0.5f, rng);
  DeviceBuffer<float> dy(y, "slot outputs"), dh(h, "h"), dh2(h, "h"), dw(w, "w"), sum(size_t(T * d), "sum");
  DeviceBuffer<float> xn(size_t(T * d), "xn"), xn2(size_t(T * d), "xn");
  DeviceBuffer<int> ts(tok_slot, "tok_slot");
  const size_t words = size_t(cuda::xfrag_words(T, d));
  DeviceBuffer<uint32_t> xf(std::vector<uint32_t>(words, 0x7fc07fc0u), "fragments"), ref(words, "packed xn");
  cuda::rmsnorm_zero_centred(dh.get(), dy.get(), dw.get(), T, d, 1e-6f, xn.get(), nullptr, {ts.get(), A, xf.get(), d});
  cuda::moe_combine(dy.get(), ts.get(), T, A, d, false, sum.get(), nullptr);
  cuda::rmsnorm_zero_centred(dh2.get(), sum.get(), dw.get(), T, d, 1e-6f, xn2.get(), nullptr);
  cuda::pack_activations(xn2.get(), d, T, d, nullptr, T, d, ref.get(), nullptr);
  const auto got_h = dh.download(), want_h = dh2.download();
  EXPECT_EQ(got_h, want_h);
  EXPECT_EQ(xn.download(), xn2.download());
  EXPECT_EQ(xf.download(), ref.download());
  EXPECT_NE(got_h, h);  // the residual did change h
  // a slot residual needs the slot outputs
  EXPECT_ANY_THROW(cuda::rmsnorm_zero_centred(dh.get(), nullptr, dw.get(), T, d, 1e-6f, xn.get(), nullptr, {ts.get(), A}));
}

TEST(CudaEmbedding, GathersRowsExactly) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(52);
  const int64_t V = 1000, H = 2048;
  std::vector<uint16_t> table(size_t(V * H));
  for (auto& v : table) v = f32_to_bf16(std::uniform_real_distribution<float>(-1, 1)(rng));
  const std::vector<int> ids{0, 999, 17, 17, 512};
  DeviceBuffer<uint16_t> dt(table, "table");
  DeviceBuffer<int> di(ids, "ids");
  DeviceBuffer<float> dh(ids.size() * size_t(H), "h");
  cuda::embed(di.get(), dt.get(), int64_t(ids.size()), H, dh.get(), nullptr);
  const auto h = dh.download();
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < H; ++i)
      ASSERT_EQ(h[t * size_t(H) + size_t(i)], bf16_to_f32(table[size_t(ids[t] * H + i)]));
}

constexpr int64_t kVocab = 248320;

TEST(CudaSampling, ArgmaxMatchesCpuWithTiesNanAndInf) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(53);
  const int64_t rows = 5;
  auto l = test::random_f32(size_t(rows * kVocab), -10.f, 10.f, rng);
  l[size_t(0 * kVocab + 200000)] = 50.f;  // row 0: tie between 200000 and 123 -> 123
  l[size_t(0 * kVocab + 123)] = 50.f;
  l[size_t(1 * kVocab + 5)] = NAN;  // row 1: a NaN, flagged
  l[size_t(1 * kVocab + kVocab - 1)] = 60.f;
  l[size_t(4 * kVocab + 77)] = INFINITY;  // row 4: +inf, flagged like NaN (the CPU sampler refuses both)
  // the device reduces spans of 2048 logits, then the spans: ties across a span border and within one span
  l[size_t(2 * kVocab + 2048)] = 70.f;  // row 2: 2047 (end of span 0) ties 2048 (start of span 1) -> 2047
  l[size_t(2 * kVocab + 2047)] = 70.f;
  l[size_t(3 * kVocab + 5001)] = 40.f;  // row 3: 4999 and 5001, one span -> 4999
  l[size_t(3 * kVocab + 4999)] = 40.f;
  DeviceBuffer<float> dl(l, "logits");
  DeviceBuffer<int> ids(size_t(rows), "ids"), bad(size_t(rows), "bad rows");
  const int64_t wsw = cuda::argmax_workspace_words(rows, kVocab);
  DeviceBuffer<uint64_t> ws(size_t(wsw), "argmax workspace");
  cuda::argmax(dl.get(), rows, kVocab, kVocab, ids.get(), bad.get(), ws.get(), wsw, nullptr);
  const auto got = ids.download(), gb = bad.download();
  for (int64_t r = 0; r < rows; ++r) {
    if (r != 1 && r != 4) {
      EXPECT_EQ(got[size_t(r)], sampler_argmax(std::span<const float>(l.data() + r * kVocab, size_t(kVocab))));
    }
    EXPECT_EQ(gb[size_t(r)], r == 1 || r == 4 ? 1 : 0);
  }
  EXPECT_EQ(got[0], 123);
  EXPECT_EQ(got[1], kVocab - 1);
  EXPECT_EQ(got[2], 2047);
  EXPECT_EQ(got[3], 4999);
  EXPECT_ANY_THROW(cuda::argmax(dl.get(), rows, kVocab, kVocab, ids.get(), bad.get(), ws.get(), wsw - 1, nullptr));
  // candidates limited to the first V = kVocab − 1 ids of each row: row 1's maximum (the last id) is excluded
  cuda::argmax(dl.get(), rows, kVocab - 1, kVocab, ids.get(), bad.get(), ws.get(), wsw, nullptr);
  const auto cut = ids.download();
  EXPECT_EQ(cut[0], 123);
  int64_t best = -1;  // row 1 over its first kVocab − 1 ids, NaN ranked below every number
  for (int64_t i = 0; i < kVocab - 1; ++i) {
    const float v = l[size_t(kVocab + i)];
    if (!std::isnan(v) && (best < 0 || v > l[size_t(kVocab + best)])) best = i;
  }
  EXPECT_EQ(cut[1], best);
  EXPECT_NE(cut[1], kVocab - 1);
}

TEST(CudaSampling, ArgmaxOfNonFiniteRows) {
  HLWQ_REQUIRE_CUDA();
  const int64_t V = 3000, rows = 3;  // two spans, the second partial
  std::vector<float> l(size_t(rows * V), -INFINITY);
  for (int64_t i = 0; i < V; ++i) l[size_t(i)] = NAN;  // row 0: all NaN -> the lowest id, flagged
  l[size_t(V)] = NAN;                                     // row 1: NaN below -inf -> id 1, flagged
  l[size_t(2 * V + 2999)] = -1e30f;                       // row 2: the last id of the partial span, not flagged
  DeviceBuffer<float> dl(l, "logits");
  DeviceBuffer<int> ids(size_t(rows), "ids"), bad(size_t(rows), "bad rows");
  const int64_t wsw = cuda::argmax_workspace_words(rows, V);
  DeviceBuffer<uint64_t> ws(size_t(wsw), "argmax workspace");
  cuda::argmax(dl.get(), rows, V, V, ids.get(), bad.get(), ws.get(), wsw, nullptr);
  EXPECT_EQ(ids.download(), (std::vector<int>{0, 1, 2999}));
  EXPECT_EQ(bad.download(), (std::vector<int>{1, 1, 0}));
}

TEST(CudaSampling, TopKTopPMinPDrawsMatchCpuSampler) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(54);
  struct Case {
    float temperature;
    int top_k;
    float top_p, min_p;
  };
  const int64_t rows = 64;
  for (Case c : {Case{1.f, 50, 1.f, 0.f}, Case{0.7f, 20, 0.9f, 0.f}, Case{1.3f, 1024, 0.5f, 0.05f}, Case{1.f, 1, 1.f, 0.f}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.temperature << " k " << c.top_k << " p " << c.top_p << " min_p "
                                    << c.min_p);
    auto l = test::random_f32(size_t(rows * kVocab), -5.f, 5.f, rng);
    for (int64_t r = 0; r < rows; ++r)  // a peaked head, as real logits have, with a tie at the k-th place
      for (int i = 0; i < 40; ++i) l[size_t(r * kVocab + (i * 7919) % kVocab)] = 12.f - 0.25f * float(i / 2);
    std::vector<double> u(static_cast<size_t>(rows));
    for (auto& x : u) x = double(rng() >> 11) * 0x1.0p-53;
    DeviceBuffer<float> dl(l, "logits");
    DeviceBuffer<double> du(u, "u");
    DeviceBuffer<int> ids(size_t(rows), "ids");
    cuda::sample_top_k(dl.get(), rows, kVocab, kVocab, {c.temperature, c.top_k, c.top_p, c.min_p}, du.get(), ids.get(),
                       nullptr);
    const auto got = ids.download();
    SamplerConfig cfg;
    cfg.temperature = c.temperature;
    cfg.top_k = c.top_k;
    cfg.top_p = c.top_p;
    cfg.min_p = c.min_p;
    for (int64_t r = 0; r < rows; ++r) {
      const auto cand = sampler_filter(std::span<const float>(l.data() + r * kVocab, size_t(kVocab)), cfg);
      double cum = 0;
      int32_t want = cand.ids.back();
      for (size_t i = 0; i < cand.ids.size(); ++i)
        if (u[size_t(r)] < (cum += cand.probs[i])) {
          want = cand.ids[i];
          break;
        }
      EXPECT_EQ(got[size_t(r)], want) << "row " << r;
    }
  }
}

}  // namespace
}  // namespace hlwq
