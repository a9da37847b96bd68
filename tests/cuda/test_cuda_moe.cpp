// The device MoE block (router GEMM, top-k routing, grouped INT4/bf16 experts, shared expert, combine) against
// the CPU moe_forward on Qwen3.6 shapes (H 2048, 256 experts of width 512, top-8, shared expert 512), decode
// batches 1–16 and a prefill; and the router's edge cases (ties, NaN, renormalization) on crafted logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <iterator>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/expert_store.h"
#include "backend/cuda/gemm_tiled.cuh"
#include "backend/cuda/moe.cuh"
#include "backend/cuda/moe_router_one.cuh"
#include "backend/cuda/weight_pack.h"
#include "cuda_test_util.h"
#include "error_budgets.h"
#include "cpu_reference.h"

namespace hlwq {
namespace {

struct OwnedMoe {
  MoeWeights w;
  std::vector<std::unique_ptr<test::OwnedLinear>> store;
};

// shared_parts: the shared expert is shared_parts times as wide as a routed expert (the demo model has 2).
OwnedMoe random_moe(int64_t H, int64_t E, int64_t I, bool int4, std::mt19937_64& rng, int64_t shared_parts = 1) {
  OwnedMoe m;
  auto keep = [&](std::unique_ptr<test::OwnedLinear> o) {
    m.store.push_back(std::move(o));
    return m.store.back()->w;
  };
  auto lin = [&](const std::string& n, int64_t out, int64_t in) {
    return int4 ? keep(test::random_int4(n, out, in, 0.08f, rng)) : keep(test::random_bf16(n, out, in, 0.04f, rng));
  };
  m.w.router = keep(test::random_bf16("router", E, H, 0.05f, rng));
  for (int64_t e = 0; e < E; ++e)
    m.w.experts.push_back({lin("gate", I, H), lin("up", I, H), lin("down", H, I)});
  m.w.has_shared = true;
  const int64_t Is = shared_parts * I;
  m.w.shared = {lin("sgate", Is, H), lin("sup", Is, H), lin("sdown", H, Is)};
  m.w.shared_gate = keep(test::random_bf16("shared_gate", 1, H, 0.05f, rng));
  return m;
}

// The first `words` words of an xfrag buffer of bf16 pairs as floats (in storage order: two buffers of one plan compare
// element for element).
std::vector<float> widen(const std::vector<uint32_t>& xfrag, size_t words) {
  std::vector<float> f;
  for (size_t i = 0; i < words; ++i)
    for (const uint32_t b : {xfrag[i] << 16, xfrag[i] & 0xFFFF0000u}) f.push_back(std::bit_cast<float>(b));
  return f;
}

void check_moe(const OwnedMoe& m, int64_t k, const std::vector<int64_t>& batches, std::mt19937_64& rng) {
  const int64_t H = m.w.router.in;
  const auto L = cuda::upload_moe(m.w, k);
  auto ws = cuda::make_moe_workspace(L, *std::max_element(batches.begin(), batches.end()));
  for (int64_t T : batches) {
    SCOPED_TRACE(testing::Message() << "T=" << T);
    const auto x = test::random_bf16_exact(size_t(T * H), 1.f, rng);
    std::vector<float> ref(size_t(T * H));
    test::ref_moe(m.w, k, x.data(), T, ref.data());
    cuda::DeviceBuffer<float> dx(x, "x"), out(size_t(T * H), "out");
    // accumulate onto a known residual to test that path too
    const auto res = test::random_f32(size_t(T * H), -1.f, 1.f, rng);
    out.upload(res.data(), res.size());
    cuda::moe_forward(L, ws, dx.get(), T, out.get(), true, nullptr);
    HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "moe test");
    auto got = out.download();
    for (size_t i = 0; i < got.size(); ++i) got[i] -= res[i];
    EXPECT_REL(got, ref, test::kMoeRel);
  }
}

// The packing of a layer's routed experts for the host store and the all-resident placement (CPU only, runs
// everywhere): each expert's four arrays land at its layout offsets with the bytes pack_gate_up / pack_linear give;
// a layer of another expert count than the buffer holds, or of another shape than the layout, is refused.
TEST(CudaMoe, LayerPackingFollowsTheLayout) {
  std::mt19937_64 rng(11);
  const int64_t E = 6;
  const auto m = random_moe(256, E, 128, true, rng);
  const cuda::ExpertLayout lay = cuda::expert_layout(m.w);
  std::vector<uint8_t> dst(size_t(E * lay.bytes));
  cuda::pack_layer_experts(m.w, lay, E, dst.data(), "layer 0");
  for (int64_t e = 0; e < E; ++e) {
    const ExpertWeights& x = m.w.experts[size_t(e)];
    const auto gu = cuda::pack_gate_up(cuda::PackedFormat::int4, x.gate_proj, x.up_proj);
    const auto dn = cuda::pack_linear(cuda::PackedFormat::int4, x.down_proj);
    const uint8_t* at = dst.data() + e * lay.bytes;
    EXPECT_EQ(0, std::memcmp(at + lay.gu_q, gu.q.data(), gu.q.size() * 4)) << "expert " << e;
    EXPECT_EQ(0, std::memcmp(at + lay.gu_s, gu.scale.data(), gu.scale.size() * 4)) << "expert " << e;
    EXPECT_EQ(0, std::memcmp(at + lay.dn_q, dn.q.data(), dn.q.size() * 4)) << "expert " << e;
    EXPECT_EQ(0, std::memcmp(at + lay.dn_s, dn.scale.data(), dn.scale.size() * 4)) << "expert " << e;
  }
  std::vector<uint8_t> small(size_t((E - 1) * lay.bytes));
  EXPECT_THROW(cuda::pack_layer_experts(m.w, lay, E - 1, small.data(), "layer 0"), Error);
  const auto wide = random_moe(256, E, 256, true, rng);
  std::vector<uint8_t> big(size_t(E * cuda::expert_layout(wide.w).bytes));
  EXPECT_THROW(cuda::pack_layer_experts(wide.w, lay, E, big.data(), "layer 0"), Error);
}

TEST(CudaMoe, Int4MatchesCpuOnQwen36Shapes) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(20);
  const auto m = random_moe(2048, 256, 512, true, rng);
  check_moe(m, 8, {1, 2, 4, 16, 100}, rng);
}

TEST(CudaMoe, Bf16ExpertsMatchCpu) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(21);
  const auto m = random_moe(2048, 32, 512, false, rng);
  check_moe(m, 8, {1, 7, 33}, rng);
}

// A shared expert twice (or three times) as wide as the routed ones runs as expert-width slices.
TEST(CudaMoe, WideSharedExpertRunsAsSlices) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(24);
  check_moe(random_moe(256, 16, 128, true, rng, 2), 4, {1, 5, 40}, rng);
  check_moe(random_moe(256, 16, 128, false, rng, 3), 4, {1, 9}, rng);
}

// The experts' gate_up reads each slot's token row of the packed xn through the plan (x_rows): bit for bit what it
// computes from the rows gathered by slot (pack_activations with slot_tok), at one token (INT4: the light kernel), a
// few, and a prefill batch (activations staged in shared memory), INT4 and BF16; empty slots (−1) read zeros.
TEST(CudaMoe, GateUpByTokenRowEqualsGatheredSlots) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(25);
  for (const bool int4 : {true, false}) {
    const auto m = random_moe(2048, 64, 512, int4, rng);
    const auto L = cuda::upload_moe(m.w, 8);
    auto ws = cuda::make_moe_workspace(L, 200);
    for (const int64_t T : {1, 5, 200}) {
      SCOPED_TRACE(testing::Message() << (int4 ? "int4" : "bf16") << " T=" << T);
      const int64_t H = 2048, tiles = cuda::moe_max_tiles(T, 8, 64, 1);
      const auto x = test::random_bf16_exact(size_t(T * H), 1.f, rng);
      cuda::DeviceBuffer<float> dx(x, "x"), out(size_t(T * H), "out");
      cuda::moe_forward(L, ws, dx.get(), T, out.get(), false, nullptr);  // the plan and the packed xn (x_tok)
      cuda::DeviceBuffer<uint32_t> xs(size_t(cuda::xfrag_words(tiles * 8, L.gu.in_pad)), "x by slot");
      const std::vector<uint32_t> zeros(ws.h.size(), 0u);  // h's columns past I are never written
      cuda::DeviceBuffer<uint32_t> h_rows(zeros, "h"), h_slots(zeros, "h");
      cuda::pack_activations(dx.get(), H, T, H, ws.slot_tok.get(), tiles * 8, L.gu.in_pad, xs.get(), nullptr);
      cuda::gemm_grouped(L.gu, cuda::GroupedEpilogue::swiglu, xs.get(), ws.tile_mat.get(), tiles, h_slots.get(),
                         L.dn.in_pad, nullptr, 0, nullptr, nullptr);
      cuda::gemm_grouped(L.gu, cuda::GroupedEpilogue::swiglu, ws.x_tok.get(), ws.tile_mat.get(), tiles, h_rows.get(),
                         L.dn.in_pad, nullptr, 0, nullptr, nullptr, 0, ws.slot_tok.get());
      HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "gate_up by row");
      const auto a = h_rows.download(), b = h_slots.download();
      const size_t used = size_t(cuda::xfrag_words(tiles * 8, L.dn.in_pad));
      EXPECT_TRUE(std::equal(a.begin(), a.begin() + std::ptrdiff_t(used), b.begin()));
    }
  }
}

// The fused expert MLP (moe_fused.cuh; INT4 experts, sm_90 and later) runs where a decode plan fits a few waves of its
// clusters: against the CPU in check_moe, and here, launched directly, against the two grouped launches on the same
// plan and packed input (another summation order, so within a budget, not bit for bit) — at one token, a few, and
// 40 (many waves of 16-block clusters, tokens past the first 8-row tile of x) — on shapes
// that take each of its loops:
// Qwen3.6's; the larger random fixture's (H 256, I 128: blocks without gate_up work, two k-units split over four
// warps); several passes and down chunks a block with down rows for only some blocks (H 384, I 1152). Its copy of h
// for the calibration statistics is checked too, and every cluster size the device runs gives the bits of the size
// the policy chose.
TEST(CudaMoe, FusedMlpMatchesTwoLaunches) {
  HLWQ_REQUIRE_CUDA();
  int dev = 0, major = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "device");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "arch");
  std::mt19937_64 rng(26);
  struct Shape {
    int64_t H, E, I;
  };
  int ran = 0, sizes = 0;
  // No INT4 shape reaches the fused kernel's zeroing of a half-owned chunk or of chunks past the owned ones: the
  // down projection's I columns are whole 128-column groups (pack: in % 128 == 0), so gate_up has I / 16 row groups,
  // an even count, and h's I / 32 chunks are all owned (an I of 144 is refused when packed)
  for (const Shape sh : {Shape{2048, 64, 512}, Shape{256, 16, 128}, Shape{384, 8, 1152}}) {
    const auto m = random_moe(sh.H, sh.E, sh.I, true, rng);
    const auto L = cuda::upload_moe(m.w, 4);
    auto ws = cuda::make_moe_workspace(L, 40);
    for (const int64_t T : {1, 2, 5, 40}) {
      SCOPED_TRACE(testing::Message() << "H=" << sh.H << " I=" << sh.I << " T=" << T);
      const int64_t tiles = cuda::moe_max_tiles(T, 4, sh.E, 1);
      if (T == 1 && major >= 9) {
        EXPECT_TRUE(ws.fused.runs(tiles)) << "cluster " << ws.fused.cluster_for(tiles);
      }
      if (!ws.fused.available()) continue;
      ++ran;
      const auto x = test::random_bf16_exact(size_t(T * sh.H), 1.f, rng);
      std::vector<float> ref(size_t(T * sh.H));
      test::ref_moe(m.w, 4, x.data(), T, ref.data());
      cuda::DeviceBuffer<float> dx(x, "x"), out(size_t(T * sh.H), "out");
      cuda::moe_forward(L, ws, dx.get(), T, out.get(), false, nullptr);  // the plan and x_tok (fused where it runs)
      HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "moe");
      EXPECT_REL(out.download(), ref, test::kMoeRel);
      const size_t rows = size_t(tiles * 8 * sh.H), hw = size_t(cuda::xfrag_words(tiles * 8, L.dn.in_pad));
      const std::vector<uint32_t> zeros(ws.h.size(), 0u);
      cuda::DeviceBuffer<uint32_t> h1(zeros, "h"), h2(zeros, "h");
      const std::vector<float> y0(rows, 0.f);  // tiles the plan leaves empty are written by neither
      cuda::DeviceBuffer<float> y1(y0, "y"), y2(y0, "y");
      cuda::fused_mlp(ws.fused, L.gu, L.dn, ws.x_tok.get(), ws.slot_tok.get(), ws.tile_mat.get(), tiles, tiles * 8,
                      h1.get(), y1.get(), sh.H, ws.slot_w.get(), nullptr);
      cuda::gemm_grouped(L.gu, cuda::GroupedEpilogue::swiglu, ws.x_tok.get(), ws.tile_mat.get(), tiles, h2.get(),
                         L.dn.in_pad, nullptr, 0, nullptr, nullptr, 0, ws.slot_tok.get());
      cuda::gemm_grouped(L.dn, cuda::GroupedEpilogue::weighted, h2.get(), ws.tile_mat.get(), tiles, nullptr, 0,
                         y2.get(), sh.H, ws.slot_w.get(), nullptr);
      HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "two launches");
      EXPECT_REL(y1.download(), y2.download(), test::kMoeRel);
      EXPECT_REL(widen(h1.download(), hw), widen(h2.download(), hw), test::kMoeRel);
      // every cluster size sums each output in the same order: the same bits as the size the policy chose
      const auto y_chosen = y1.download();
      const auto h_chosen = h1.download();
      for (int i = 0; i < cuda::kFusedSizes; ++i) {
        if (ws.fused.wave_tiles[i] == 0) continue;
        SCOPED_TRACE(testing::Message() << "cluster " << cuda::kFusedClusters[i]);
        cuda::DeviceBuffer<float> y3(y0, "y");
        cuda::DeviceBuffer<uint32_t> h3(zeros, "h");
        cuda::fused_mlp(ws.fused, L.gu, L.dn, ws.x_tok.get(), ws.slot_tok.get(), ws.tile_mat.get(), tiles, tiles * 8,
                        h3.get(), y3.get(), sh.H, ws.slot_w.get(), nullptr, {}, cuda::kFusedClusters[i]);
        HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "fused at another cluster size");
        EXPECT_TRUE(y3.download() == y_chosen);
        EXPECT_TRUE(h3.download() == h_chosen);
        ++sizes;
      }
    }
  }
  if (major >= 9) {
    EXPECT_EQ(ran, 12);
    EXPECT_GE(sizes, 12 * 2) << "fewer than two cluster sizes ran on this device";
  }
}

// A plan's experts on both kernels: gate_up (reading x_tok's rows through slot_tok) and the weighted down on the tiled
// kernel and on the fragment kernel (both downs read the tiled kernel's h, so only the down kernels differ), and the
// tiled down again as two launches split at tile t0 (launch_tiles the whole plan's count): h and y within their
// budgets, the split launches bit for bit.
void expect_tiled_grouped_matches_fragment(const cuda::MoeLayerDev& L, const uint32_t* x_tok, const int* tile_mat,
                                           const int* slot_tok, const float* slot_w, int64_t tiles, int64_t t0) {
  const int64_t H = L.H;
  const size_t hw = size_t(cuda::xfrag_words(tiles * 8, L.dn.in_pad));
  const std::vector<uint32_t> zeros(hw, 0u);
  const std::vector<float> y0(size_t(tiles * 8 * H), 0.f);
  cuda::DeviceBuffer<uint32_t> h1(zeros, "h"), h2(zeros, "h");
  cuda::DeviceBuffer<float> y1(y0, "y"), y2(y0, "y"), y3(y0, "y");
  cuda::gemm_grouped_tiled_int4(L.gu, cuda::GroupedEpilogue::swiglu, x_tok, tile_mat, tiles, h1.get(), L.dn.in_pad,
                                nullptr, 0, nullptr, nullptr, tiles, slot_tok);
  cuda::gemm_grouped_fragment(L.gu, cuda::GroupedEpilogue::swiglu, x_tok, tile_mat, tiles, h2.get(), L.dn.in_pad,
                              nullptr, 0, nullptr, nullptr, 0, slot_tok);
  cuda::gemm_grouped_tiled_int4(L.dn, cuda::GroupedEpilogue::weighted, h1.get(), tile_mat, tiles, nullptr, 0, y1.get(),
                                H, slot_w, nullptr, tiles, nullptr);
  cuda::gemm_grouped_fragment(L.dn, cuda::GroupedEpilogue::weighted, h1.get(), tile_mat, tiles, nullptr, 0, y2.get(), H,
                              slot_w, nullptr);
  cuda::gemm_grouped_tiled_int4(L.dn, cuda::GroupedEpilogue::weighted, h1.get(), tile_mat, t0, nullptr, 0, y3.get(), H,
                                slot_w, nullptr, tiles, nullptr);
  cuda::gemm_grouped_tiled_int4(L.dn, cuda::GroupedEpilogue::weighted,
                                h1.get() + t0 * cuda::xfrag_tile_words(L.dn.in_pad), tile_mat + t0, tiles - t0, nullptr,
                                0, y3.get() + t0 * 8 * H, H, slot_w + t0 * 8, nullptr, tiles, nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "tiled and fragment kernels");
  EXPECT_REL(widen(h1.download(), hw), widen(h2.download(), hw), test::kMoeRel);
  const auto y_tiled = y1.download();
  EXPECT_REL(y_tiled, y2.download(), test::kExactInputGemmRel);
  EXPECT_TRUE(y3.download() == y_tiled);
}

// The large-tile grouped kernel (gemm_tiled.cuh) that a long prefill's experts run, launched directly: against the
// fragment kernel on the same plans (another summation order, so within a budget), gate_up reading the tokens' rows
// and down reading h. Plans of 100 tokens (runs of one to a few tiles: items of one tile, several a window), 700
// and, in a test of its own (quick enough for racecheck without it), 4,096 (runs of ~18 tiles: several items a
// run), the last two where gemm_grouped takes it for Qwen3.6; and the plan in two launches (as the whole-layer
// stream runs it, the split inside a run) gives the bits of one launch.
void check_tiled_grouped(const std::vector<int64_t>& batches, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t H = 2048, E = 256, k = 8;
  const auto m = random_moe(H, E, 512, true, rng);
  const auto L = cuda::upload_moe(m.w, k);
  auto ws = cuda::make_moe_workspace(L, *std::max_element(batches.begin(), batches.end()));
  for (const int64_t T : batches) {
    SCOPED_TRACE(testing::Message() << "T=" << T);
    const int64_t tiles = cuda::moe_max_tiles(T, k, E, 1);
    if (T > 100) {
      EXPECT_TRUE(cuda::gemm_grouped_tiled_pays(L.gu, tiles) && cuda::gemm_grouped_tiled_pays(L.dn, tiles));
    }
    const auto x = test::random_bf16_exact(size_t(T * H), 1.f, rng);
    cuda::DeviceBuffer<float> dx(x, "x"), out(size_t(T * H), "out");
    cuda::moe_forward(L, ws, dx.get(), T, out.get(), false, nullptr);  // the plan and x_tok
    expect_tiled_grouped_matches_fragment(L, ws.x_tok.get(), ws.tile_mat.get(), ws.slot_tok.get(), ws.slot_w.get(),
                                          tiles, tiles / 2);
  }
}

TEST(CudaMoe, TiledGroupedMatchesTheFragmentKernel) {
  HLWQ_REQUIRE_CUDA();
  check_tiled_grouped({100, 700}, 27);
}

TEST(CudaMoe, TiledGroupedLongRuns) {
  HLWQ_REQUIRE_CUDA();
  check_tiled_grouped({4096}, 28);
}

// Plans that concentrate on a few matrices (runs longer than the window's backward scan of 256 tiles: the run is cut
// at the window's edge, and the window before reaches into it): the tiled grouped kernel against the fragment kernel
// on a plan built here, runs of 300, 3, 290 and 1 tiles, padding slots, unused tiles at the end; and in two launches.
TEST(CudaMoe, TiledGroupedLongRunsOfFewMatrices) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(29);
  const int64_t H = 2048, T = 1200;
  const auto m = random_moe(H, 8, 512, true, rng);
  const auto L = cuda::upload_moe(m.w, 2);
  std::vector<int> tile_mat;
  for (const auto& [mat, n] : {std::pair<int, int>{0, 300}, {1, 3}, {2, 290}, {5, 1}, {-1, 6}})
    tile_mat.insert(tile_mat.end(), size_t(n), mat);
  const int64_t tiles = int64_t(tile_mat.size());
  std::vector<int> slot_tok(size_t(tiles * 8));
  std::vector<float> slot_w(slot_tok.size());
  std::uniform_int_distribution<int> tok(-1, int(T) - 1);  // −1: a padding slot (reads zeros)
  for (size_t i = 0; i < slot_tok.size(); ++i) {
    slot_tok[i] = tile_mat[i / 8] < 0 ? -1 : tok(rng);
    slot_w[i] = slot_tok[i] < 0 ? 0.f : std::uniform_real_distribution<float>(0.1f, 1.f)(rng);
  }
  const auto x = test::random_bf16_exact(size_t(T * H), 1.f, rng);
  cuda::DeviceBuffer<float> dx(x, "x"), dw(slot_w, "slot weights");
  cuda::DeviceBuffer<int> dtm(tile_mat, "tile matrices"), dst(slot_tok, "slot tokens");
  cuda::DeviceBuffer<uint32_t> xt(size_t(cuda::xfrag_words(T, L.gu.in_pad)), "x_tok");
  cuda::pack_activations(dx.get(), H, T, H, nullptr, T, L.gu.in_pad, xt.get(), nullptr);
  expect_tiled_grouped_matches_fragment(L, xt.get(), dtm.get(), dst.get(), dw.get(), tiles,
                                        451);  // the split inside the second long run
}

// The cluster-size policy on the host (no GPU needed), with the H200's clusters a wave (14, 30, 62): the sizes the
// table in moe_fused.cuh was measured to favour, the caps, and a device without 16-block clusters or without any.
TEST(CudaMoe, FusedClusterPolicy) {
  cuda::FusedMlp h200;
  const int64_t waves[] = {14, 30, 62};
  std::copy(std::begin(waves), std::end(waves), h200.wave_tiles);
  EXPECT_EQ(h200.smallest(), 4);
  EXPECT_TRUE(h200.available());
  for (const auto& [tiles, size] : std::vector<std::pair<int64_t, int>>{
           {9, 16}, {72, 16}, {84, 16}, {85, 8}, {144, 8}, {180, 8}, {181, 4}, {260, 4}, {800, 4}, {806, 4}, {807, 0}}) {
    EXPECT_EQ(h200.cluster_for(tiles), size) << tiles << " tiles";
    EXPECT_EQ(h200.runs(tiles), size > 0) << tiles << " tiles";
  }
  cuda::FusedMlp no16 = h200;
  no16.wave_tiles[0] = 0;
  EXPECT_EQ(no16.cluster_for(9), 8);
  cuda::FusedMlp none;
  EXPECT_FALSE(none.available());
  EXPECT_EQ(none.smallest(), 0);
  EXPECT_EQ(none.cluster_for(1), 0);
}

TEST(CudaMoe, RejectsSharedWidthNotAMultiple) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(22);
  auto m = random_moe(256, 4, 128, false, rng);
  m.store.push_back(test::random_bf16("sgate", 192, 256, 0.1f, rng));
  m.w.shared.gate_proj = m.store.back()->w;
  EXPECT_THROW(cuda::upload_moe(m.w, 2), Error);
}

// The plan's tile bound against plans counted on the host (no GPU needed): random routings and the worst case of
// every matrix one slot past a multiple of 8; exact at one token.
TEST(CudaMoe, MaxTilesBoundsEveryPlan) {
  std::mt19937_64 rng(24);
  for (int64_t E : {8, 16, 256}) {
    for (int64_t T = 1; T <= 40; ++T) {
      const int64_t k = std::min<int64_t>(8, E), S = 1;
      std::vector<int64_t> count(size_t(E + S), 0);
      std::vector<int> ids(static_cast<size_t>(E));
      std::iota(ids.begin(), ids.end(), 0);
      for (int64_t t = 0; t < T; ++t) {
        std::shuffle(ids.begin(), ids.end(), rng);
        for (int64_t j = 0; j < k; ++j) ++count[size_t(ids[size_t(j)])];
        ++count[size_t(E)];
      }
      int64_t tiles = 0;
      for (int64_t c : count) tiles += (c + 7) / 8;
      EXPECT_LE(tiles, cuda::moe_max_tiles(T, k, E, S)) << E << " experts, " << T << " tokens";
    }
  }
  // 9 tokens on the same 8 experts: 9 matrices of 9 slots, 2 tiles each
  EXPECT_LE(18, cuda::moe_max_tiles(9, 8, 256, 1));
  EXPECT_EQ(cuda::moe_max_tiles(1, 8, 256, 1), 9);
}

// Host statement of the routing rule: NaN as −inf, descending probability, ties to the lower index, renormalized.
void route_ref(const float* l, int64_t E, int64_t k, std::vector<int>& ids, std::vector<float>& w) {
  std::vector<float> v(l, l + E);
  for (auto& x : v)
    if (std::isnan(x)) x = -INFINITY;
  const float m = *std::max_element(v.begin(), v.end());
  double s = 0;
  for (auto& x : v) s += x = std::exp(x - m);
  for (auto& x : v) x = float(x / s);
  std::vector<int> idx(static_cast<size_t>(E));
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [&](int e) { return std::isnan(v[size_t(e)]) ? -INFINITY : v[size_t(e)]; };
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return key(a) > key(b); });
  ids.assign(idx.begin(), idx.begin() + k);
  float sel = 0;
  for (int e : ids) sel += v[size_t(e)];
  w.clear();
  for (int e : ids) w.push_back(v[size_t(e)] / sel);
}

// A plan from moe_route for logits [T, E + 1] (column E the shared gate), k = 8, one shared part; route_ids: a
// trace's ids [T, k] or empty.
struct RouteResult {
  std::vector<int> ids, slot_tok, tile_mat, tok_slot;
  std::vector<float> w, slot_w;
};
RouteResult run_route(const std::vector<float>& logits, int64_t E, int64_t T, const std::vector<int>& route_ids) {
  const int64_t k = 8, ld = E + 1, tiles = cuda::moe_max_tiles(T, k, E, 1);
  cuda::DeviceBuffer<float> dl(logits, "logits"), tw(size_t(T * k), "w"), sw(size_t(tiles * 8), "sw");
  cuda::DeviceBuffer<int> ti(size_t(T * k), "ids"), st(size_t(tiles * 8), "st"), tm(size_t(tiles), "tm"),
      ts(size_t(T * (k + 1)), "ts");
  std::unique_ptr<cuda::DeviceBuffer<int>> ri;
  cuda::MoePlan plan{ti.get(), tw.get(), st.get(), sw.get(), tm.get(), ts.get()};
  if (!route_ids.empty()) {
    ri = std::make_unique<cuda::DeviceBuffer<int>>(route_ids, "route ids");
    plan.route_ids = ri->get();
  }
  cuda::moe_route(dl.get(), ld, T, E, k, 1, plan, tiles, nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "route test");
  return {ti.download(), st.download(), tm.download(), ts.download(), tw.download(), sw.download()};
}

// The plan against the ids it was built from: every (token, j) slot holds the token and its weight and lies in a
// tile of its matrix; every other slot is padding (token −1, weight 0); no slot is two (token, j)s'; each matrix's
// tiles are one run in matrix order, the unused tiles (−1) after them.
void expect_plan_consistent(const RouteResult& r, const std::vector<float>& logits, int64_t E, int64_t T) {
  const int64_t k = 8, ld = E + 1, tiles = int64_t(r.tile_mat.size());
  std::vector<int> claimed(r.slot_tok.size(), 0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j <= k; ++j) {
      SCOPED_TRACE(testing::Message() << "token " << t << " choice " << j);
      const int s = r.tok_slot[size_t(t * (k + 1) + j)];
      ASSERT_GE(s, 0);
      ASSERT_LT(s, tiles * 8);
      ++claimed[size_t(s)];
      EXPECT_EQ(r.slot_tok[size_t(s)], t);
      const int m = j < k ? r.ids[size_t(t * k + j)] : int(E);
      EXPECT_EQ(r.tile_mat[size_t(s / 8)], m);
      const float want = j < k ? r.w[size_t(t * k + j)] : 1.f / (1.f + std::exp(-logits[size_t(t * ld + E)]));
      if (!std::isnan(want)) {
        EXPECT_FLOAT_EQ(r.slot_w[size_t(s)], want);
      }
    }
  int64_t used_tiles = 0;
  while (used_tiles < tiles && r.tile_mat[size_t(used_tiles)] >= 0) ++used_tiles;
  for (int64_t i = 0; i < tiles; ++i) {
    if (i >= used_tiles) {
      EXPECT_EQ(r.tile_mat[size_t(i)], -1) << "tile " << i;
    } else if (i > 0) {
      EXPECT_LE(r.tile_mat[size_t(i - 1)], r.tile_mat[size_t(i)]) << "tile " << i;
    }
  }
  for (size_t s = 0; s < r.slot_tok.size(); ++s) {
    EXPECT_LE(claimed[s], 1) << "slot " << s;
    if (claimed[s] == 0) {
      EXPECT_EQ(r.slot_tok[s], -1) << "slot " << s;
      EXPECT_EQ(r.slot_w[s], 0.f) << "slot " << s;
    }
  }
}

// E = 200 leaves lanes of the kernel's per-lane lists past the end (its keys there are −inf, which its reduction
// takes as 0): token 4's row has every probability but one underflow to 0, so the 0s tie with them. One token takes
// the one-warp kernel (token 0's case only); past 64 tokens the top-k runs in its own launch before the plan's
// (T = 300: the cases, then random rows); E = 512 takes the 16-per-lane lists. concentrated: every token past the
// cases prefers experts 10..17 (many of a plan's slots in one matrix).
void check_router_cases(int64_t E, int64_t T, bool concentrated = false) {
  SCOPED_TRACE(testing::Message() << E << " experts, " << T << " tokens" << (concentrated ? ", concentrated" : ""));
  const int64_t k = 8, ld = E + 1;
  std::mt19937_64 rng(23);
  auto logits = test::random_f32(size_t(T * ld), -3.f, 3.f, rng);
  if (concentrated)
    for (int64_t t = 5; t < T; ++t)
      for (int64_t e = 10; e < 18; ++e) logits[size_t(t * ld + e)] += 8.f;
  // token 0: ten-way tie at the top; token 1: NaNs among the largest; token 2: all NaN; token 3: ±inf mix;
  // token 4: one expert so far ahead that every other e = exp(x − max) is 0
  for (int e = 100; e < 110; ++e) logits[size_t(e)] = 5.f;
  const bool cases = T >= 5;
  if (cases) {
    logits[size_t(4 * ld + 42)] = 200.f;
    for (int e : {3, 50, 200}) logits[size_t(ld + e)] = NAN;
    logits[size_t(ld + 7)] = 9.f;
    for (int64_t e = 0; e < E; ++e) logits[size_t(2 * ld + e)] = NAN;
    logits[size_t(3 * ld + 9)] = INFINITY;
    logits[size_t(3 * ld + 10)] = -INFINITY;
  }
  const RouteResult r = run_route(logits, E, T, {});
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int> rid;
    std::vector<float> rw;
    route_ref(logits.data() + t * ld, E, k, rid, rw);
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(r.ids[size_t(t * k + j)], rid[size_t(j)]) << "token " << t << " rank " << j;
      if (t != 2 && t != 3) {
        EXPECT_NEAR(r.w[size_t(t * k + j)], rw[size_t(j)], 1e-6);
      }
    }
  }
  expect_plan_consistent(r, logits, E, T);
  EXPECT_EQ(r.ids[0], 100);  // the tie resolves to the lowest indices, in order
  EXPECT_EQ(r.ids[7], 107);
  if (!cases) return;
  EXPECT_EQ(r.ids[size_t(k)], 7);  // token 1: NaN never outranks a number
  EXPECT_EQ(r.ids[size_t(2 * k)], 0);  // all NaN: lowest indices
  EXPECT_EQ(r.ids[size_t(4 * k)], 42);  // then the zeros, lowest indices first
  EXPECT_EQ(r.ids[size_t(4 * k + 1)], 0);
  EXPECT_EQ(r.ids[size_t(4 * k + 7)], 6);
}

TEST(CudaMoe, RouterTiesNanAndRenormalization) {
  HLWQ_REQUIRE_CUDA();
  for (int64_t E : {256, 200, 512})
    for (int64_t T : {1, 5, 300}) check_router_cases(E, T);
  check_router_cases(256, 40, true);  // the plan in the one block
  check_router_cases(256, 700, true);
}

// A routing trace may name one expert several times for a token: its choices share the expert's tiles (one tile
// while they fit), in the one-warp plan of one token and in the one-block plan alike.
TEST(CudaMoe, RouterPlanOfATraceThatRepeatsExperts) {
  HLWQ_REQUIRE_CUDA();
  const int64_t E = 256;
  const std::vector<int> row = {5, 5, 3, 9, 5, 255, 3, 0};  // k = 8 choices
  for (int64_t T : {1, 3}) {
    SCOPED_TRACE(testing::Message() << T << " tokens");
    std::mt19937_64 rng(29);
    const auto logits = test::random_f32(size_t(T * (E + 1)), -3.f, 3.f, rng);
    std::vector<int> route_ids;
    for (int64_t t = 0; t < T; ++t) route_ids.insert(route_ids.end(), row.begin(), row.end());
    const RouteResult r = run_route(logits, E, T, route_ids);
    EXPECT_EQ(r.ids, route_ids);
    expect_plan_consistent(r, logits, E, T);
    // matrices 0, 3, 5, 9, 255 and the shared part: one tile each at one token (expert 5's three choices in one)
    if (T == 1) {
      EXPECT_EQ(std::vector<int>(r.tile_mat.begin(), r.tile_mat.begin() + 7), (std::vector<int>{0, 3, 5, 9, 255, 256, -1}));
      EXPECT_EQ(r.tok_slot[0] / 8, r.tok_slot[4] / 8);
    }
  }
}

// A bf16 router of `rows` rows (E experts and the shared gate) over H columns, packed on the device.
cuda::PackedLinear random_router(int64_t rows, int64_t H, std::mt19937_64& rng) {
  const auto w = test::random_bf16("router", rows, H, 0.05f, rng);
  return cuda::upload_packed(cuda::pack_rows(cuda::PackedFormat::bf16, {{&w->w, 0, rows}}, "router"), "router");
}

// The router and plan of a one-token step in one launch (moe_router_one.cuh), against the router GEMM: logits within
// the budget of exact inputs (another summation order), the plan route_ref and the plan checks give for its own
// logits, a trace's ids, and the same bits at every cluster size. Shapes: Qwen3.6's router (256 experts and the
// shared gate over 2,048 columns: 17 row tiles, one block with two), 200 experts over 384 columns (3 k-units: warps
// with none) and 512 experts (16 a lane in the top-k, 33 row tiles).
TEST(CudaMoe, RouterOfOneTokenInOneLaunch) {
  HLWQ_REQUIRE_CUDA();
  struct Shape {
    int64_t E, H;
  };
  int ran = 0;
  for (const Shape sh : {Shape{256, 2048}, Shape{200, 384}, Shape{512, 1024}}) {
    SCOPED_TRACE(testing::Message() << sh.E << " experts, " << sh.H << " columns");
    std::mt19937_64 rng(31);
    const int64_t E = sh.E, H = sh.H, k = 8, ld = E + 1, tiles = cuda::moe_max_tiles(1, k, E, 1);
    const cuda::PackedLinear router = random_router(ld, H, rng);
    const cuda::RouterOne one = cuda::plan_router_one(router, E, k, 1);
    int dev = 0, major = 0;
    HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "device");
    HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "arch");
    if (major >= 9) {
      EXPECT_TRUE(one.available());
    }
    if (!one.available()) continue;
    const auto x = test::random_bf16_exact(size_t(H), 1.f, rng);
    cuda::DeviceBuffer<float> dx(x, "x"), gl(size_t(ld), "gemm logits");
    cuda::DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(1, router.in_pad)), "x fragments");
    cuda::pack_activations(dx.get(), H, 1, H, nullptr, 1, router.in_pad, xf.get(), nullptr);
    cuda::gemm(router, xf.get(), 1, gl.get(), ld, nullptr);
    HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "router gemm");
    const auto gemm_logits = gl.download();
    for (const bool trace : {false, true}) {
      SCOPED_TRACE(trace ? "a trace's ids" : "the router's ids");
      const std::vector<int> route_ids = {5, 5, 3, 9, 5, int(E - 1), 3, 0};
      RouteResult chosen;
      std::vector<float> chosen_logits;
      for (const int C : cuda::kRouterOneClusters) {
        SCOPED_TRACE(testing::Message() << "cluster " << C);
        cuda::DeviceBuffer<float> dl(size_t(ld), "logits"), tw(size_t(k), "w"), sw(size_t(tiles * 8), "sw");
        cuda::DeviceBuffer<int> ti(size_t(k), "ids"), st(size_t(tiles * 8), "st"), tm(size_t(tiles), "tm"),
            ts(size_t(k + 1), "ts"), ri(route_ids, "route ids");
        cuda::MoePlan plan{ti.get(), tw.get(), st.get(), sw.get(), tm.get(), ts.get(), trace ? ri.get() : nullptr};
        try {
          cuda::router_one(one, router, xf.get(), dl.get(), E, k, 1, plan, tiles, nullptr, C);
        } catch (const Error&) {
          EXPECT_NE(C, one.cluster) << "the planned size must run";
          continue;  // a size this device does not co-schedule
        }
        HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "router of one token");
        const RouteResult r{ti.download(), st.download(), tm.download(), ts.download(), tw.download(), sw.download()};
        const auto logits = dl.download();
        EXPECT_REL(logits, gemm_logits, test::kExactInputGemmRel);
        std::vector<int> rid;
        std::vector<float> rw;
        route_ref(logits.data(), E, k, rid, rw);
        for (int64_t j = 0; j < k; ++j) {
          EXPECT_EQ(r.ids[size_t(j)], trace ? route_ids[size_t(j)] : rid[size_t(j)]) << "rank " << j;
          EXPECT_NEAR(r.w[size_t(j)], rw[size_t(j)], 1e-6) << "rank " << j;
        }
        expect_plan_consistent(r, logits, E, 1);
        if (chosen_logits.empty()) {
          chosen = r;
          chosen_logits = logits;
          ++ran;
        } else {  // every size sums each logit in the same order
          EXPECT_TRUE(logits == chosen_logits);
          EXPECT_TRUE(r.ids == chosen.ids && r.tile_mat == chosen.tile_mat && r.slot_tok == chosen.slot_tok &&
                      r.tok_slot == chosen.tok_slot && r.w == chosen.w && r.slot_w == chosen.slot_w);
        }
      }
    }
  }
  if (ran > 0) {
    EXPECT_EQ(ran, 6);
  }
}

// The expert cache's plan inside the one-token router launch (moe_router_one.cuh: the routing warp plans the cache
// too) against the plan kernel after a router launch without it, on twin caches over the same host copies: after
// every step the same slot map, expert map, recency, clock, admissions, counters, CPU marks and tables (an entry as
// host copy or slot plus offset). Random tokens route with little reuse, so slots are evicted most steps; every
// fifth step a prefetch (the same on both) sets slots the walk then finds prefetched; cache sizes from one slot (all
// but one of the step's experts streamed) to half the experts; no CPU, `auto` with costs that send about half of
// the misses to the CPU, and `all`. Shapes: 64 experts over 256 columns (the home block has no row tile) and
// Qwen3.6's router.
TEST(CudaMoe, CachePlanInsideTheOneTokenRouter) {
  HLWQ_REQUIRE_CUDA();
  struct Shape {
    int64_t E, H;
  };
  for (const Shape sh : {Shape{64, 256}, Shape{256, 2048}}) {
    std::mt19937_64 rng(37);
    const int64_t E = sh.E, H = sh.H, k = 8, ld = E + 1, tiles = cuda::moe_max_tiles(1, k, E, 1);
    const cuda::PackedLinear router = random_router(ld, H, rng);
    const cuda::RouterOne one = cuda::plan_router_one(router, E, k, 1);
    if (!one.available()) {
      GTEST_SKIP() << "the one-token router needs sm_90";
    }
    cuda::ExpertLayout lay;
    lay.int4 = true;
    lay.gu_q = 0, lay.gu_s = 64, lay.dn_q = 96, lay.dn_s = 160, lay.bytes = 192;
    const cuda::DeviceBuffer<uint8_t> host(size_t(E * lay.bytes), "host experts");
    const CpuSplitCosts halves{10.f, 12.f, 5.f};  // pcie, cpu per expert, cpu fixed: n of m misses to the CPU ≈ m / 2
    for (const int64_t N : {int64_t(1), k - 1, k, int64_t(20), E / 2})
      for (const CpuExperts mode : {CpuExperts::off, CpuExperts::automatic, CpuExperts::all}) {
        SCOPED_TRACE(testing::Message() << "E=" << E << " N=" << N << " mode " << cpu_experts_name(mode));
        struct Twin {
          cuda::ExpertCacheDev c;
          cuda::DeviceBuffer<const uint32_t*> gq, dq;
          cuda::DeviceBuffer<const float*> gs, ds;
          cuda::DeviceBuffer<uint8_t> mark;
          cuda::DeviceBuffer<float> logits, tw, sw;
          cuda::DeviceBuffer<int> ti, st, tm, ts;
          cuda::ExpertTables tables() { return {gq.get(), gs.get(), dq.get(), ds.get()}; }
          cuda::MoePlan plan() { return {ti.get(), tw.get(), st.get(), sw.get(), tm.get(), ts.get()}; }
        };
        auto make = [&] {
          std::vector<const uint32_t*> q, dqv;
          std::vector<const float*> s, dsv;
          for (int64_t e = 0; e < E; ++e) {
            const uint8_t* x = host.get() + e * lay.bytes;
            q.push_back(reinterpret_cast<const uint32_t*>(x + lay.gu_q));
            dqv.push_back(reinterpret_cast<const uint32_t*>(x + lay.dn_q));
            s.push_back(reinterpret_cast<const float*>(x + lay.gu_s));
            dsv.push_back(reinterpret_cast<const float*>(x + lay.dn_s));
          }
          return Twin{cuda::make_expert_cache(E, N, lay, host.get()),
                      cuda::DeviceBuffer<const uint32_t*>(q, "gq"), cuda::DeviceBuffer<const uint32_t*>(dqv, "dq"),
                      cuda::DeviceBuffer<const float*>(s, "gs"), cuda::DeviceBuffer<const float*>(dsv, "ds"),
                      cuda::DeviceBuffer<uint8_t>(std::vector<uint8_t>(size_t(E), 0), "marks"),
                      cuda::DeviceBuffer<float>(size_t(ld), "logits"), cuda::DeviceBuffer<float>(size_t(k), "tw"),
                      cuda::DeviceBuffer<float>(size_t(tiles * 8), "sw"), cuda::DeviceBuffer<int>(size_t(k), "ti"),
                      cuda::DeviceBuffer<int>(size_t(tiles * 8), "st"), cuda::DeviceBuffer<int>(size_t(tiles), "tm"),
                      cuda::DeviceBuffer<int>(size_t(k + 1), "ts")};
        };
        Twin a = make(), b = make();  // a: the plan in the router launch; b: the plan kernel after it
        cuda::DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(1, router.in_pad)), "x fragments");
        cuda::DeviceBuffer<float> dx(size_t(H), "x");
        // a table entry as (0, offset in the host copies) or (1 + twin's slot base distance)
        auto where = [&](const Twin& t, const void* p) {
          const auto* u = static_cast<const uint8_t*>(p);
          const uint8_t* h0 = host.get();
          if (u >= h0 && u < h0 + E * lay.bytes) return std::pair<int, int64_t>{0, u - h0};
          return std::pair<int, int64_t>{1, u - t.c.slots.get()};
        };
        for (int step = 0; step < 24; ++step) {
          SCOPED_TRACE(testing::Message() << "step " << step);
          const auto x = test::random_bf16_exact(size_t(H), 1.f, rng);
          dx.upload(x.data(), x.size());
          cuda::pack_activations(dx.get(), H, 1, H, nullptr, 1, router.in_pad, xf.get(), nullptr);
          const auto cpu = [&](Twin& t) {
            return mode == CpuExperts::off ? cuda::CpuSplitArgs{} : cuda::CpuSplitArgs{mode, halves, t.mark.get()};
          };
          const cuda::ExpertCachePlan pa = cuda::expert_cache_plan_of(a.c, a.ti.get(), 1, k, a.tables(), cpu(a));
          cuda::router_one(one, router, xf.get(), a.logits.get(), E, k, 1, a.plan(), tiles, nullptr, 0, &pa);
          cuda::router_one(one, router, xf.get(), b.logits.get(), E, k, 1, b.plan(), tiles, nullptr);
          cuda::expert_cache_plan(cuda::expert_cache_plan_of(b.c, b.ti.get(), 1, k, b.tables(), cpu(b)), nullptr);
          HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "router and cache plan");
          ASSERT_EQ(a.ti.download(), b.ti.download());
          ASSERT_EQ(a.c.slot_expert.download(), b.c.slot_expert.download());
          ASSERT_EQ(a.c.expert_slot.download(), b.c.expert_slot.download());
          ASSERT_EQ(a.c.slot_used.download(), b.c.slot_used.download());
          ASSERT_EQ(a.c.step.download(), b.c.step.download());
          ASSERT_EQ(a.c.slot_prefetched.download(), b.c.slot_prefetched.download());
          const int n_copies = a.c.n_copies.download()[0];
          ASSERT_EQ(n_copies, b.c.n_copies.download()[0]);
          const auto ca = a.c.copies.download(), cb = b.c.copies.download();
          ASSERT_TRUE(std::equal(ca.begin(), ca.begin() + 2 * n_copies, cb.begin()));
          ASSERT_EQ(a.c.counters.download(), b.c.counters.download());
          if (mode != CpuExperts::off) {
            ASSERT_EQ(a.mark.download(), b.mark.download());
          }
          auto same_tables = [&](const auto& ta, const auto& tb) {
            for (int64_t e = 0; e < E; ++e) ASSERT_EQ(where(a, ta[size_t(e)]), where(b, tb[size_t(e)])) << "expert " << e;
          };
          same_tables(a.gq.download(), b.gq.download());
          same_tables(a.gs.download(), b.gs.download());
          same_tables(a.dq.download(), b.dq.download());
          same_tables(a.ds.download(), b.ds.download());
          if (step % 5 == 4) {  // the same prefetch into both: slots the next walks find prefetched
            const auto hint = test::random_f32(size_t(ld), 0.f, 1.f, rng);
            const cuda::DeviceBuffer<float> dh(hint, "hint logits");
            for (Twin* t : {&a, &b}) cuda::expert_cache_prefetch(t->c, dh.get(), ld, 1, k, t->tables(), nullptr);
          }
        }
        const auto cnt = cuda::expert_cache_counters(a.c);
        EXPECT_GT(cnt.loads, 0u);
        if (N >= 20 && mode != CpuExperts::all) {
          EXPECT_GT(cnt.hits + cnt.prefetch_hits, 0u);
        }
        if (mode == CpuExperts::automatic) {
          EXPECT_GT(cnt.cpu_only, 0u);
        }
        if (N == 1 && mode == CpuExperts::off) {
          EXPECT_GT(cnt.streamed, 0u);
        }
      }
  }
  // the launch refuses a plan of other ids
  std::mt19937_64 rng(41);
  const int64_t E = 64, k = 8, tiles = cuda::moe_max_tiles(1, k, E, 1);
  const cuda::PackedLinear router = random_router(E + 1, 256, rng);
  const cuda::RouterOne one = cuda::plan_router_one(router, E, k, 1);
  cuda::ExpertLayout lay;
  lay.bytes = 64;
  const cuda::DeviceBuffer<uint8_t> host(size_t(E * lay.bytes), "host experts");
  auto c = cuda::make_expert_cache(E, 4, lay, host.get());
  cuda::DeviceBuffer<int> ids(size_t(k), "ids"), other(size_t(k), "other ids");
  cuda::MoePlan plan{ids.get(), nullptr, nullptr, nullptr, nullptr, nullptr};
  const cuda::ExpertCachePlan p = cuda::expert_cache_plan_of(c, other.get(), 1, k, {});
  EXPECT_THROW(cuda::router_one(one, router, nullptr, nullptr, E, k, 1, plan, tiles, nullptr, 0, &p), Error);
}

}  // namespace
}  // namespace hlwq
