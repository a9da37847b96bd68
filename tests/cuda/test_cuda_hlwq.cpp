// HLWQ on the GPU (hlwq_gemm.cuh) against the CPU HLWQ kernels (src/quant/hlwq_linear*, through the CPU backend's
// linear_forward) and the CPU FWHT (quant/hadamard.h): the documented packed layout (CPU-only, runs everywhere),
// the rotated activation pack, exact codebook values, the GEMM at every width 2..8 and on Qwen3.6 shapes
// (2048→512 experts, 512→2048 down, 2048→8192) at decode batches 1/4/16 and prefill, the MoE block with HLWQ
// experts and a wide shared expert, and negative cases (flipped code order, another matrix).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/hlwq_gemm.cuh"
#include "backend/cuda/moe.cuh"
#include "core/dtype.h"
#include "cpu_reference.h"
#include "cuda_test_util.h"
#include "error_budgets.h"
#include "quant/hadamard.h"
#include "quant/hlwq_pack.h"
#include "quant/lloyd_max.h"

namespace hlwq {
namespace {

using test::rel_err;

// A random HLWQ matrix with the bytes its view points to: uniform codes, fp16 norms of size ~ norm_mag, the
// Lloyd-Max table of its width.
struct OwnedHlwq {
  LinearWeight w;
  std::vector<uint8_t> codes;  // [out, row_bytes] packed
  std::vector<uint16_t> norms;  // [out, nb] fp16
  std::vector<float> codebook;
};

std::unique_ptr<OwnedHlwq> random_hlwq(const std::string& name, int64_t out, int64_t in, int bits, float norm_mag,
                                       std::mt19937_64& rng, HlwqBitOrder order = HlwqBitOrder::lsb_first) {
  auto o = std::make_unique<OwnedHlwq>();
  const int64_t nb = (in + 127) / 128, inp = nb * 128;
  o->codebook = lloyd_max_table(bits);
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::uniform_real_distribution<float> nm(0.5f * norm_mag, 1.5f * norm_mag);
  std::vector<uint8_t> c(static_cast<size_t>(inp));
  o->codes.resize(size_t(out * nb * 16 * bits));
  o->norms.resize(size_t(out * nb));
  for (int64_t r = 0; r < out; ++r) {
    for (auto& v : c) v = uint8_t(code(rng));
    hlwq_pack_codes(c.data(), inp, bits, order, o->codes.data() + r * nb * 16 * bits);
    for (int64_t b = 0; b < nb; ++b) o->norms[size_t(r * nb + b)] = f32_to_f16(nm(rng));
  }
  o->w.name = name;
  o->w.format = LinearFormat::hlwq;
  o->w.out = out;
  o->w.in = in;
  o->w.hlwq = HlwqMatrixView{out, in, bits, order, o->codes.data(), o->norms.data(), o->codebook.data()};
  return o;
}

// Inverse of the documented HLWQ layout (weight_pack.h): the code at (row, col) of the packed matrix.
uint32_t unpack_code(const cuda::PackedLinearHost& p, int64_t row, int64_t col) {
  const int B = p.bits;
  const int64_t rt = row / 16, i = row % 16, ku = col / 128, kk = col % 128, st = kk / 16, k16 = kk % 16;
  const int64_t g = i % 8, c = (k16 % 8) / 2, half = k16 % 2, r = (i / 8) + 2 * (k16 / 8);
  const int64_t lane = g * 4 + c, bit = ((st * 4 + r) * 2 + half) * B;
  const uint32_t* w = p.q.data() + ((rt * (p.in_pad / 128) + ku) * 32 + lane) * 2 * B;
  const uint64_t two = uint64_t(w[bit / 32]) | (bit / 32 + 1 < 2 * B ? uint64_t(w[bit / 32 + 1]) << 32 : 0);
  return uint32_t(two >> (bit % 32)) & ((1u << B) - 1);
}

TEST(CudaHlwqPack, LayoutMatchesCheckpoint) {
  std::mt19937_64 rng(40);
  for (int bits = 2; bits <= 8; ++bits)
    for (HlwqBitOrder order : {HlwqBitOrder::lsb_first, HlwqBitOrder::msb_first}) {
      SCOPED_TRACE(testing::Message() << bits << " bits, order " << int(order));
      auto w = random_hlwq("w", 40, 300, bits, 2.f, rng, order);  // padded to 64 x 384 (a 44-column tail block)
      const auto p = cuda::pack_linear(cuda::PackedFormat::hlwq, w->w);
      ASSERT_EQ(p.out_pad, 64);
      ASSERT_EQ(p.in_pad, 384);
      ASSERT_EQ(p.bits, bits);
      ASSERT_EQ(p.codebook, w->codebook);
      ASSERT_EQ(p.q.size(), size_t(4 * 3 * 32 * 2 * bits));
      std::vector<uint8_t> row(384);
      for (int64_t r = 0; r < p.out_pad; ++r) {
        if (r < 40) hlwq_unpack_codes(w->codes.data() + r * 3 * 16 * bits, 384, bits, order, row.data());
        for (int64_t k = 0; k < p.in_pad; ++k)
          ASSERT_EQ(unpack_code(p, r, k), r < 40 ? row[size_t(k)] : 0u) << "row " << r << " col " << k;
        for (int64_t b = 0; b < 3; ++b)
          ASSERT_EQ(p.scale[size_t((((r / 16) * 3 + b) * 8 + r % 8) * 2 + (r % 16) / 8)],
                    r < 40 ? f16_to_f32(w->norms[size_t(r * 3 + b)]) / 128.f : 0.f);
      }
    }
}

TEST(CudaHlwqPack, RejectsMixedWidthsAndFormats) {
  std::mt19937_64 rng(41);
  auto a = random_hlwq("a", 16, 256, 4, 1.f, rng);
  auto b = random_hlwq("b", 16, 256, 5, 1.f, rng);
  auto d = test::random_bf16("d", 16, 256, 1.f, rng);
  EXPECT_THROW(cuda::pack_rows(cuda::PackedFormat::hlwq, {{&a->w, 0, 16}, {&b->w, 0, 16}}, "ab"), Error);
  EXPECT_THROW(cuda::pack_linear(cuda::PackedFormat::hlwq, d->w), Error);
  EXPECT_THROW(cuda::pack_linear(cuda::PackedFormat::int4, a->w), Error);
  auto a2 = random_hlwq("a2", 16, 256, 4, 1.f, rng);
  a2->codebook[3] += 1e-3f;  // same width, another table
  EXPECT_THROW(cuda::pack_rows(cuda::PackedFormat::hlwq, {{&a->w, 0, 16}, {&a2->w, 0, 16}}, "aa2"), Error);
}

// Slices (a wide shared expert runs as expert-width parts) decode to the same weights.
TEST(CudaHlwqPack, RowAndColumnSlicesKeepWeights) {
  std::mt19937_64 rng(42);
  auto w = random_hlwq("w", 32, 512, 4, 1.f, rng);
  std::vector<float> full(512), part(256);
  std::vector<uint8_t> st;
  const LinearWeight c = cuda::column_slice(w->w, 256, 256, st);
  ASSERT_EQ(c.in, 256);
  for (int64_t r = 0; r < 32; ++r) {
    hlwq_decode_row(w->w.hlwq, r, full.data());
    hlwq_decode_row(c.hlwq, r, part.data());
    for (int64_t k = 0; k < 256; ++k) ASSERT_EQ(part[size_t(k)], full[size_t(256 + k)]) << r << "," << k;
  }
  EXPECT_THROW(cuda::column_slice(w->w, 64, 128, st), Error);  // inside a rotation block
  const LinearWeight rs = cuda::row_slice(w->w, 16, 8);
  ASSERT_EQ(rs.out, 8);
  hlwq_decode_row(w->w.hlwq, 19, full.data());
  std::vector<float> got(512);
  hlwq_decode_row(rs.hlwq, 3, got.data());
  EXPECT_EQ(got, full);
}

// Host copy of gemm.cuh's xfrag element index (slot n, column k).
int64_t xfrag_elem(int64_t n, int64_t k, int64_t in_pad) {
  const int64_t tile = n >> 3, gg = n & 7, s = k >> 4, kk = k & 15;
  const int64_t word = ((tile * (in_pad / 32) + (s >> 1)) * 32 + gg * 4 + ((kk & 7) >> 1)) * 4 + (s & 1) * 2 + (kk >> 3);
  return word * 2 + (kk & 1);
}

// xfrag [slots, in_pad] as fp32 rows.
std::vector<float> read_xfrag(const cuda::DeviceBuffer<uint32_t>& xf, int64_t slots, int64_t in_pad) {
  const auto words = xf.download();
  const auto* e = reinterpret_cast<const uint16_t*>(words.data());
  std::vector<float> x(size_t(slots * in_pad));
  for (int64_t n = 0; n < slots; ++n)
    for (int64_t k = 0; k < in_pad; ++k) x[size_t(n * in_pad + k)] = bf16_to_f32(e[xfrag_elem(n, k, in_pad)]);
  return x;
}

// The rotated activation pack is FWHT per block then one bf16 rounding (2⁻⁹ per element, kBf16ActivationRel), by
// token and by slot (the SwiGLU output: dead tiles left alone).
TEST(CudaHlwq, RotatedPackIsTheFwht) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(43);
  const int64_t T = 5, in = 300, in_pad = 384, slots = 16;
  const auto x = test::random_f32(size_t(T * in), -1.f, 1.f, rng);
  std::vector<float> ref(size_t(slots * in_pad), 0.f);
  for (int64_t t = 0; t < T; ++t) {
    std::copy_n(x.begin() + t * in, in, ref.begin() + t * in_pad);
    for (int64_t b = 0; b < 3; ++b) fwht128_unscaled(ref.data() + t * in_pad + b * 128);
  }
  cuda::DeviceBuffer<float> dx(x, "x");
  cuda::DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(slots, in_pad)), "xfrag");
  cuda::hlwq_pack_activations(dx.get(), in, T, in, nullptr, T, in_pad, xf.get(), nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "pack");
  EXPECT_REL(read_xfrag(xf, slots, in_pad), ref, test::kBf16ActivationRel);

  // a wrong transform is far outside: the unrotated activations
  cuda::pack_activations(dx.get(), in, T, in, nullptr, T, in_pad, xf.get(), nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "plain");
  EXPECT_GT(rel_err(read_xfrag(xf, slots, in_pad), ref), 0.5);

  // rows by slot with the second 8-slot tile dead: the first tile rotated, the second left as it was (ones here)
  const auto h = test::random_f32(size_t(slots * in), -1.f, 1.f, rng);
  std::vector<float> href(size_t(slots * in_pad), 1.f);
  for (int64_t n = 0; n < 8; ++n) {
    std::fill_n(href.begin() + n * in_pad, in_pad, 0.f);
    std::copy_n(h.begin() + n * in, in, href.begin() + n * in_pad);
    for (int64_t b = 0; b < 3; ++b) fwht128_unscaled(href.data() + n * in_pad + b * 128);
  }
  const std::vector<float> ones(size_t(slots * in_pad), 1.f);
  cuda::DeviceBuffer<float> dones(ones, "ones"), dh(h, "h");
  cuda::DeviceBuffer<int> tile_mat(std::vector<int>{3, -1}, "tile_mat");
  cuda::pack_activations(dones.get(), in_pad, slots, in_pad, nullptr, slots, in_pad, xf.get(), nullptr);
  cuda::hlwq_pack_slots(dh.get(), in, slots, in, tile_mat.get(), in_pad, xf.get(), nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "pack slots");
  EXPECT_REL(read_xfrag(xf, slots, in_pad), href, test::kBf16ActivationRel);
}

// GPU y [T, out] for an HLWQ matrix and fp32 x [T, in].
std::vector<float> gpu_hlwq(const cuda::PackedLinear& w, const std::vector<float>& x, int64_t T) {
  cuda::DeviceBuffer<float> dx(x, "x");
  cuda::DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(T, w.in_pad)), "xfrag");
  cuda::DeviceBuffer<float> y(size_t(T * w.out), "y");
  cuda::hlwq_pack_activations(dx.get(), w.in, T, w.in, nullptr, T, w.in_pad, xf.get(), nullptr);
  cuda::gemm(w, xf.get(), T, y.get(), w.out, nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "hlwq gemm test");
  return y.download();
}

void check_gemm(const OwnedHlwq& w, const std::vector<int64_t>& batches, std::mt19937_64& rng) {
  const auto dw = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::hlwq, w.w), "w");
  for (int64_t T : batches) {
    SCOPED_TRACE(testing::Message() << w.w.out << "x" << w.w.in << " " << w.w.hlwq.bits << " bits T=" << T);
    const auto x = test::random_f32(size_t(T * w.w.in), -1.f, 1.f, rng);
    std::vector<float> ref(size_t(T * w.w.out));
    test::ref_linear(w.w, x.data(), T, ref.data());
    EXPECT_REL(gpu_hlwq(dw, x, T), ref, test::kHlwqGemmRel);
  }
}

TEST(CudaHlwq, GemmMatchesCpuAtEveryWidth) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(44);
  for (int bits = 2; bits <= 8; ++bits) {
    auto w = random_hlwq("w", 300, 700, bits, 0.5f, rng);  // ragged: rows padded, a 60-column tail block
    check_gemm(*w, {1, 3, 8, 9, 16, 40}, rng);
  }
}

// The codebook values reach the products exactly (to ~2⁻¹⁷): with one power-of-two input per 128-column block the
// unscaled FWHT gives ±that power in every column, exact in bf16, so the activation rounding is out of the way and
// only the fp32 accumulation order differs from the CPU. A bf16 table of the Lloyd-Max values (the previous kernel)
// is off by up to 2⁻⁹ per weight here, ≈ 1e-3 norm-wise: 100× this budget.
TEST(CudaHlwq, CodebookValuesAreExact) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(45);
  for (int bits : {3, 4, 5, 8}) {
    auto w = random_hlwq("w", 256, 640, bits, 0.5f, rng);
    const auto dw = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::hlwq, w->w), "w");
    for (int64_t T : {1, 16}) {
      SCOPED_TRACE(testing::Message() << bits << " bits T=" << T);
      std::vector<float> x(size_t(T * w->w.in), 0.f);
      std::uniform_int_distribution<int> col(0, 127), pw(-2, 2), sign(0, 1);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t b = 0; b < w->w.in / 128; ++b)
          x[size_t(t * w->w.in + b * 128 + col(rng))] = std::ldexp(sign(rng) ? 1.f : -1.f, pw(rng));
      std::vector<float> ref(size_t(T * w->w.out));
      test::ref_linear(w->w, x.data(), T, ref.data());
      EXPECT_REL(gpu_hlwq(dw, x, T), ref, test::kExactInputGemmRel);
    }
  }
}

TEST(CudaHlwq, GemmMatchesCpuOnQwen36Shapes) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(45);
  for (int bits : {3, 4, 5})
    for (auto [out, in] : {std::pair<int64_t, int64_t>{512, 2048}, {2048, 512}, {8192, 2048}}) {
      auto w = random_hlwq("w", out, in, bits, 0.5f, rng);
      check_gemm(*w, {1, 4, 16, 77}, rng);
    }
}

// Negative cases: codes read in the other bit order, or another matrix, are far outside the budget.
TEST(CudaHlwq, FlippedCodeOrderAndWrongWeightsFail) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(46);
  for (int bits : {3, 4, 5}) {
    auto w = random_hlwq("w", 512, 2048, bits, 0.5f, rng);
    const auto x = test::random_f32(2048 * 4, -1.f, 1.f, rng);
    std::vector<float> ref(512 * 4);
    test::ref_linear(w->w, x.data(), 4, ref.data());
    LinearWeight flipped = w->w;
    flipped.hlwq.order = HlwqBitOrder::msb_first;  // same bytes, the other documented order
    const auto df = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::hlwq, flipped), "flipped");
    const double e = rel_err(gpu_hlwq(df, x, 4), ref);
    std::printf("[ err      ] %d bits, flipped code order: %.3g\n", bits, e);
    EXPECT_GT(e, 0.5);
    auto w2 = random_hlwq("w2", 512, 2048, bits, 0.5f, rng);
    const auto d2 = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::hlwq, w2->w), "w2");
    EXPECT_GT(rel_err(gpu_hlwq(d2, x, 4), ref), 0.5);
  }
}

struct OwnedHlwqMoe {
  MoeWeights w;
  std::vector<std::unique_ptr<OwnedHlwq>> q;
  std::vector<std::unique_ptr<test::OwnedLinear>> dense;
};

// Routed experts [I, H] / [H, I] and a shared expert shared_parts · I wide, HLWQ; router and shared gate bf16.
OwnedHlwqMoe random_hlwq_moe(int64_t H, int64_t E, int64_t I, int bits, int64_t shared_parts, std::mt19937_64& rng) {
  OwnedHlwqMoe m;
  auto q = [&](const std::string& n, int64_t out, int64_t in) {
    m.q.push_back(random_hlwq(n, out, in, bits, 0.3f, rng));
    return m.q.back()->w;
  };
  auto d = [&](const std::string& n, int64_t out, int64_t in) {
    m.dense.push_back(test::random_bf16(n, out, in, 0.05f, rng));
    return m.dense.back()->w;
  };
  m.w.router = d("router", E, H);
  for (int64_t e = 0; e < E; ++e) m.w.experts.push_back({q("gate", I, H), q("up", I, H), q("down", H, I)});
  m.w.has_shared = true;
  m.w.shared = {q("sgate", shared_parts * I, H), q("sup", shared_parts * I, H), q("sdown", H, shared_parts * I)};
  m.w.shared_gate = d("shared_gate", 1, H);
  return m;
}

TEST(CudaHlwq, MoeMatchesCpu) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(47);
  for (int bits : {3, 4, 5}) {
    // Qwen3.6-like (64 of its 256 experts, to keep the CPU reference quick) and the demo model's wide shared expert
    for (auto [E, I, S] : {std::tuple<int64_t, int64_t, int64_t>{64, 512, 1}, {16, 128, 2}}) {
      const int64_t H = 2048, k = 8;
      const auto m = random_hlwq_moe(H, E, I, bits, S, rng);
      const auto L = cuda::upload_moe(m.w, k);
      auto ws = cuda::make_moe_workspace(L, 16);
      for (int64_t T : {1, 4, 16}) {
        SCOPED_TRACE(testing::Message() << bits << " bits E=" << E << " I=" << I << " T=" << T);
        const auto x = test::random_bf16_exact(size_t(T * H), 1.f, rng);
        std::vector<float> ref(size_t(T * H));
        test::ref_moe(m.w, k, x.data(), T, ref.data());
        cuda::DeviceBuffer<float> dx(x, "x"), out(size_t(T * H), "out");
        cuda::moe_forward(L, ws, dx.get(), T, out.get(), false, nullptr);
        HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "hlwq moe test");
        EXPECT_REL(out.download(), ref, test::kHlwqMoeRel);
      }
    }
  }
}

}  // namespace
}  // namespace hlwq
