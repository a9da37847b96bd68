// The two token mixers on the device, composed as the backend will run them (packed projection GEMMs + the
// mixer kernels), against the CPU gdn_forward / attention_forward on Qwen3.6 shapes (H 2048; GDN Hk 16, Hv 32,
// dk = dv = 128, conv 4; attention Hq 16, Hkv 2, D 256, partial rotary 0.25, θ 1e7) over several calls that
// continue one sequence (prefill chunk, decode steps, another chunk), plus two sequences batched in one call and
// many one-token sequences (the recurrence's two lane counts); attention with other query groups and head widths, and
// attention over batches of several sequences (prefills, decode steps and short chunks mixed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/gdn.cuh"
#include "backend/cuda/gdn_chunked.cuh"
#include "backend/cuda/gemm.cuh"
#include "core/dtype.h"
#include "cuda_test_util.h"
#include "error_budgets.h"
#include "cpu_reference.h"

namespace hlwq {
namespace {

using cuda::DeviceBuffer;

// y [T, w.out] = x [T, in] · Wᵀ on the device (x already on the device).
void dev_linear(const cuda::PackedLinear& w, const float* x, int64_t T, DeviceBuffer<uint32_t>& xf, float* y) {
  cuda::pack_activations(x, w.in, T, w.in, nullptr, T, w.in_pad, xf.get(), nullptr);
  cuda::gemm(w, xf.get(), T, y, w.out, nullptr);
}

struct GdnFixture {
  static constexpr int64_t H = 2048, Hk = 16, Hv = 32, dk = 128, dv = 128, K = 4, C = 2 * Hk * dk + Hv * dv;
  std::vector<std::unique_ptr<test::OwnedLinear>> store;
  GdnWeights w;
  GdnDims d{H, Hk, Hv, dk, dv, K, 1e-6f};
  cuda::PackedLinear qkvz, ba, out_proj;
  DeviceBuffer<float> conv_w, A_log, dt_bias, norm_w;

  explicit GdnFixture(std::mt19937_64& rng) {
    auto keep = [&](std::unique_ptr<test::OwnedLinear> o) {
      store.push_back(std::move(o));
      return store.back()->w;
    };
    w.in_proj_qkv = keep(test::random_int4("qkv", C, H, 0.1f, rng));
    w.in_proj_z = keep(test::random_int4("z", Hv * dv, H, 0.1f, rng));
    w.in_proj_b = keep(test::random_bf16("b", Hv, H, 0.05f, rng));
    w.in_proj_a = keep(test::random_bf16("a", Hv, H, 0.05f, rng));
    w.out_proj = keep(test::random_int4("out", H, Hv * dv, 0.1f, rng));
    w.conv1d = test::random_f32(size_t(C * K), -0.6f, 0.6f, rng);
    w.dt_bias = test::random_f32(size_t(Hv), -1.f, 1.f, rng);
    w.A_log = test::random_f32(size_t(Hv), -1.f, 1.5f, rng);
    w.norm = test::random_f32(size_t(dv), 0.5f, 1.5f, rng);
    qkvz = cuda::upload_packed(
        cuda::pack_rows(cuda::PackedFormat::int4, {{&w.in_proj_qkv, 0, C}, {&w.in_proj_z, 0, Hv * dv}}, "qkvz"), "qkvz");
    ba = cuda::upload_packed(cuda::pack_rows(cuda::PackedFormat::bf16, {{&w.in_proj_b, 0, Hv}, {&w.in_proj_a, 0, Hv}}, "ba"),
                             "ba");
    out_proj = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::int4, w.out_proj), "out_proj");
    conv_w = DeviceBuffer<float>(w.conv1d, "conv");
    A_log = DeviceBuffer<float>(w.A_log, "A_log");
    dt_bias = DeviceBuffer<float>(w.dt_bias, "dt_bias");
    norm_w = DeviceBuffer<float>(w.norm, "norm");
  }

  // One call over a batch of sequences; states [slots] on the device. chunked: sequences of at least
  // kGdnChunkedMinTokens run the chunked form (otherwise every one the token recurrence).
  void run(const float* dx, int64_t T, const std::vector<cuda::GdnSeq>& seqs, float* conv_state, float* S,
           float* dout, bool chunked = true) {
    DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(T, 4096)), "xf");
    DeviceBuffer<float> proj(size_t(T * qkvz.out), "proj"), bav(size_t(T * ba.out), "ba"), act(size_t(T * C), "act"),
        o(size_t(T * Hv * dv), "o");
    DeviceBuffer<cuda::GdnSeq> ds(seqs, "seqs");
    dev_linear(qkvz, dx, T, xf, proj.get());
    dev_linear(ba, dx, T, xf, bav.get());
    const cuda::GdnDimsDev dd{int(Hk), int(Hv), int(dk), int(dv), int(K), 1e-6f};
    int max_n = 0;
    for (const auto& q : seqs) max_n = std::max(max_n, q.n);
    cuda::gdn_conv(proj.get(), qkvz.out, ds.get(), int(seqs.size()), max_n, conv_w.get(), conv_state, dd, act.get(),
                   nullptr);
    DeviceBuffer<float> ws(size_t(cuda::gdn_chunked_workspace_floats(T, dd)), "chunked GDN workspace");
    ASSERT_TRUE(cuda::gdn_chunked_fits(dd, 0));
    cuda::gdn_delta_rule(act.get(), proj.get() + C, qkvz.out, bav.get(), ba.out, A_log.get(), dt_bias.get(),
                         norm_w.get(), ds.get(), int(seqs.size()), max_n, S, dd, T, chunked ? ws.get() : nullptr,
                         o.get(), nullptr);
    dev_linear(out_proj, o.get(), T, xf, dout);
    HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "gdn test");
  }
};

TEST(CudaGdn, LayerMatchesCpuAcrossCalls) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(30);
  GdnFixture f(rng);
  std::vector<float> S_ref(size_t(f.d.recurrent_state_floats()), 0.f), conv_ref(size_t(f.d.conv_state_floats()), 0.f);
  DeviceBuffer<float> conv(conv_ref, "conv state"), S(S_ref, "S");
  int64_t pos0 = 0;
  // 200 and 64 tokens run the chunked form (several chunks, a partial last one), the rest the recurrence
  for (int64_t T : {5, 1, 1, 40, 200, 1, 64, 1}) {
    SCOPED_TRACE(testing::Message() << "T=" << T);
    const auto x = test::random_bf16_exact(size_t(T * f.H), 1.f, rng);
    std::vector<float> ref(size_t(T * f.H));
    const BatchSeq seq{0, pos0, 0, T, {}};
    test::ref_gdn(f.w, f.d, x.data(), T, {&seq, 1}, S_ref.data(), conv_ref.data(), ref.data());
    pos0 += T;
    DeviceBuffer<float> dx(x, "x"), out(size_t(T * f.H), "out");
    f.run(dx.get(), T, {{0, int(T), 0}}, conv.get(), S.get(), out.get());
    EXPECT_REL(out.download(), ref, test::kGdnLayerRel);
    EXPECT_REL(S.download(), S_ref, test::kGdnStateRel);
    EXPECT_REL(conv.download(), conv_ref, test::kFp32Rel);
  }
}

TEST(CudaGdn, TwoSequencesInOneBatch) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(31);
  GdnFixture f(rng);
  const int64_t n0 = 3, n1 = 2, T = n0 + n1;
  const auto x = test::random_bf16_exact(size_t(T * f.H), 1.f, rng);
  // slots: sequence 0 in slot 1, sequence 1 in slot 0 (the same on both sides, so the state buffers compare whole)
  const BatchSeq seqs[2] = {{1, 0, 0, n0, {}}, {0, 0, n0, n1, {}}};
  const size_t cs = size_t(f.d.conv_state_floats()), ss = size_t(f.d.recurrent_state_floats());
  std::vector<float> S_ref(2 * ss, 0.f), conv_ref(2 * cs, 0.f), ref(size_t(T * f.H));
  test::ref_gdn(f.w, f.d, x.data(), T, seqs, S_ref.data(), conv_ref.data(), ref.data());
  DeviceBuffer<float> conv(conv_ref.size(), "conv"), S(S_ref.size(), "S");
  HLWQ_CUDA_CHECK(cudaMemset(conv.get(), 0, conv.bytes()), "");
  HLWQ_CUDA_CHECK(cudaMemset(S.get(), 0, S.bytes()), "");
  DeviceBuffer<float> dx(x, "x"), out(size_t(T * f.H), "out");
  f.run(dx.get(), T, {{0, int(n0), 1}, {int(n0), int(n1), 0}}, conv.get(), S.get(), out.get());
  EXPECT_REL(out.download(), ref, test::kGdnLayerRel);
  EXPECT_REL(S.download(), S_ref, test::kGdnStateRel);
  EXPECT_REL(conv.download(), conv_ref, test::kFp32Rel);
}

// A long and a short sequence in one batch: the chunked form takes the first, the recurrence the second; and the
// chunked form against the recurrence on the same long input (both against the CPU above).
TEST(CudaGdn, ChunkedAndRecurrentSequencesInOneBatch) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(32);
  GdnFixture f(rng);
  const int64_t n0 = 150, n1 = 2, T = n0 + n1;
  const auto x = test::random_bf16_exact(size_t(T * f.H), 1.f, rng);
  const BatchSeq seqs[2] = {{0, 0, 0, n0, {}}, {1, 0, n0, n1, {}}};
  const size_t cs = size_t(f.d.conv_state_floats()), ss = size_t(f.d.recurrent_state_floats());
  std::vector<float> S_ref(2 * ss, 0.f), conv_ref(2 * cs, 0.f), ref(size_t(T * f.H));
  test::ref_gdn(f.w, f.d, x.data(), T, seqs, S_ref.data(), conv_ref.data(), ref.data());
  std::vector<float> outs[2], states[2];
  for (bool chunked : {true, false}) {
    DeviceBuffer<float> conv(conv_ref.size(), "conv"), S(S_ref.size(), "S");
    HLWQ_CUDA_CHECK(cudaMemset(conv.get(), 0, conv.bytes()), "");
    HLWQ_CUDA_CHECK(cudaMemset(S.get(), 0, S.bytes()), "");
    DeviceBuffer<float> dx(x, "x"), out(size_t(T * f.H), "out");
    f.run(dx.get(), T, {{0, int(n0), 0}, {int(n0), int(n1), 1}}, conv.get(), S.get(), out.get(), chunked);
    outs[chunked] = out.download();
    states[chunked] = S.download();
    SCOPED_TRACE(chunked ? "chunked" : "recurrent");
    EXPECT_REL(outs[chunked], ref, test::kGdnLayerRel);
    EXPECT_REL(states[chunked], S_ref, test::kGdnStateRel);
  }
  EXPECT_REL(outs[1], outs[0], test::kGdnLayerRel);
  EXPECT_REL(states[1], states[0], test::kGdnStateRel);
}

// Decode steps of one-token sequences: with one, the recurrence runs 8 lanes a column of S where the GPU has an SM for
// each of its 128 blocks, with 64 (8,192 blocks) 2; both against the CPU over two steps, each sequence in its own
// state slot.
TEST(CudaGdn, OneTokenSequencesInBothLaneCounts) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(33);
  GdnFixture f(rng);
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  const int64_t blocks_per_seq = f.Hv * ((f.dv + 31) / 32);
  if (sms < blocks_per_seq)
    std::printf("[ note     ] %d SMs: the 8-lane recurrence needs %lld; both cases run the 2-lane one here\n", sms,
                static_cast<long long>(blocks_per_seq));
  for (int64_t n : {int64_t(1), int64_t(64)}) {
    const int lanes = cuda::gdn_recurrent_lanes(blocks_per_seq * n, sms);
    SCOPED_TRACE(testing::Message() << n << " sequences, " << lanes << " lanes a column");
    EXPECT_EQ(lanes, n == 1 && sms >= blocks_per_seq ? 8 : 2);
    const size_t cs = size_t(f.d.conv_state_floats()), ss = size_t(f.d.recurrent_state_floats());
    std::vector<float> S_ref(size_t(n) * ss, 0.f), conv_ref(size_t(n) * cs, 0.f);
    DeviceBuffer<float> conv(conv_ref, "conv"), S(S_ref, "S");
    std::vector<BatchSeq> seqs;
    std::vector<cuda::GdnSeq> dseqs;
    for (int64_t i = 0; i < n; ++i) {  // sequence i in slot n − 1 − i, token i of the batch
      seqs.push_back({int32_t(n - 1 - i), 0, i, 1, {}});
      dseqs.push_back({int(i), 1, int(n - 1 - i)});
    }
    for (int step = 0; step < 2; ++step) {
      const auto x = test::random_bf16_exact(size_t(n * f.H), 1.f, rng);
      std::vector<float> ref(size_t(n * f.H));
      test::ref_gdn(f.w, f.d, x.data(), n, seqs, S_ref.data(), conv_ref.data(), ref.data());
      for (auto& q : seqs) ++q.pos0;
      DeviceBuffer<float> dx(x, "x"), out(size_t(n * f.H), "out");
      f.run(dx.get(), n, dseqs, conv.get(), S.get(), out.get());
      EXPECT_REL(out.download(), ref, test::kGdnLayerRel);
      EXPECT_REL(S.download(), S_ref, test::kGdnStateRel);
    }
  }
}

// A batch of an attention test: (sequence, tokens) in batch order; each sequence continues where it stopped.
using AttnBatch = std::vector<std::pair<int, int64_t>>;

// One attention layer over a scrambled paged cache against the CPU layer, batch after batch. Each batch runs with the
// plan the engine makes (attend_plan: sequences of ≥ 16 tokens on the tensor cores, the rest on the CUDA cores) and
// again with every token on the CUDA-core kernel; the two must agree, and the planned run must match the CPU.
void check_attention(int64_t Hq, int64_t Hkv, int64_t D, int64_t r, uint64_t seed, const std::vector<AttnBatch>& batches) {
  std::mt19937_64 rng(seed);
  const int64_t H = 2048;
  std::vector<std::unique_ptr<test::OwnedLinear>> store;
  auto keep = [&](std::unique_ptr<test::OwnedLinear> o) {
    store.push_back(std::move(o));
    return store.back()->w;
  };
  AttentionWeights w;
  w.q_proj = keep(test::random_int4("q", Hq * 2 * D, H, 0.1f, rng));
  w.k_proj = keep(test::random_int4("k", Hkv * D, H, 0.1f, rng));
  w.v_proj = keep(test::random_int4("v", Hkv * D, H, 0.1f, rng));
  w.o_proj = keep(test::random_int4("o", H, Hq * D, 0.1f, rng));
  w.q_norm = test::random_f32(size_t(D), -0.3f, 0.3f, rng);
  w.k_norm = test::random_f32(size_t(D), -0.3f, 0.3f, rng);
  AttentionDims d{H, Hq, Hkv, D, r, 1e-6f, {}};
  for (int64_t i = 0; i < r / 2; ++i) d.inv_freq.push_back(1.f / std::pow(1e7f, float(2 * i) / float(r)));

  const auto qkv = cuda::upload_packed(
      cuda::pack_rows(cuda::PackedFormat::int4, {{&w.q_proj, 0, w.q_proj.out}, {&w.k_proj, 0, Hkv * D}, {&w.v_proj, 0, Hkv * D}},
                      "qkv"),
      "qkv");
  const auto o_proj = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::int4, w.o_proj), "o_proj");
  DeviceBuffer<float> qn(w.q_norm, "q_norm"), kn(w.k_norm, "k_norm"), invf(d.inv_freq, "inv_freq");
  // scrambled pages: sequence i's position p in page bt[i · kSeqBlocks + p / 16]
  constexpr int kSeqs = 4, kSeqBlocks = 16;
  const int64_t n_blocks = kSeqs * kSeqBlocks, row = Hkv * D;
  std::vector<int> bt(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) bt[size_t(i)] = int((i * 37 + 11) % n_blocks);  // 37 is prime to 64
  DeviceBuffer<uint16_t> kp(size_t(n_blocks * 16 * row), "K pages"), vp(size_t(n_blocks * 16 * row), "V pages");
  DeviceBuffer<int> dbt(bt, "block tables");
  const cuda::AttnDimsDev dd{int(Hq), int(Hkv), int(D), int(r), 1e-6f};

  std::vector<float> kref(size_t(n_blocks * 16 * row), 0.f), vref(kref.size(), 0.f);  // CPU pages, fp32
  int64_t len[kSeqs] = {};
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  for (const AttnBatch& batch : batches) {
    std::vector<BatchSeq> seqs;
    std::vector<cuda::AttendSeq> aseqs;
    std::vector<int> pos, off;
    testing::Message what;
    for (const auto& [i, n] : batch) {
      const int64_t t0 = int64_t(pos.size());
      what << " seq " << i << ": " << n << " at " << len[i] << ";";
      seqs.push_back({i, len[i], t0, n, std::span<const int32_t>(bt).subspan(size_t(i * kSeqBlocks), kSeqBlocks)});
      aseqs.push_back({t0, n, len[i]});
      for (int64_t t = 0; t < n; ++t) pos.push_back(int(len[i] + t)), off.push_back(i * kSeqBlocks);
      len[i] += n;
      ASSERT_LE(len[i], kSeqBlocks * 16);
    }
    const int64_t T = int64_t(pos.size());
    const cuda::AttendPlanHost plan = cuda::attend_plan(aseqs, dd);
    SCOPED_TRACE(what << " tensor-core blocks " << plan.n_tiles << ", CUDA-core tokens " << plan.n_core);
    const auto x = test::random_bf16_exact(size_t(T * H), 1.f, rng);
    std::vector<float> ref(size_t(T * H));
    test::ref_attention(w, d, x.data(), T, seqs, kref.data(), vref.data(), 16, ref.data());

    DeviceBuffer<int> dpos(pos, "pos"), doff(off, "bt_off");
    DeviceBuffer<int> words(plan.words.empty() ? std::vector<int>{0} : plan.words, "attention plan");
    const cuda::AttendPlan dplan{plan.words.empty() ? nullptr : words.get(), plan.n_tiles, plan.n_core};
    DeviceBuffer<float> dx(x, "x"), proj(size_t(T * qkv.out), "proj"), att(size_t(T * Hq * D), "att"),
        att_cc(size_t(T * Hq * D), "att, CUDA cores"), out(size_t(T * H), "out");
    DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(T, 4096)), "xf");
    dev_linear(qkv, dx.get(), T, xf, proj.get());
    const int64_t qw = Hq * 2 * D;
    cuda::qk_norm_rope_store(proj.get(), qkv.out, proj.get() + qw, qkv.out, proj.get() + qw + row, qkv.out, qn.get(),
                             kn.get(), invf.get(), dpos.get(), doff.get(), dbt.get(), kp.get(), vp.get(), T, dd, nullptr);
    const int64_t wsf = cuda::attend_workspace_floats(T, dd, sms);
    DeviceBuffer<float> ws(size_t(std::max<int64_t>(wsf, 1)), "attend workspace");
    cuda::attend(proj.get(), qkv.out, dpos.get(), doff.get(), dbt.get(), kp.get(), vp.get(), T, dplan, dd, att.get(),
                 ws.get(), wsf, nullptr);
    // every token on the CUDA-core kernel (no plan) over the same cache: the two kernels must agree
    cuda::attend(proj.get(), qkv.out, dpos.get(), doff.get(), dbt.get(), kp.get(), vp.get(), T, {}, dd, att_cc.get(),
                 ws.get(), wsf, nullptr);
    EXPECT_REL(att.download(), att_cc.download(), test::kAttentionKernelsRel);
    dev_linear(o_proj, att.get(), T, xf, out.get());
    HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "attention test");
    EXPECT_REL(out.download(), ref, test::kAttentionRel);
    // the cache: keys and values of every position so far, read through the block tables on both sides
    const auto kh = kp.download(), vh = vp.download();
    std::vector<float> kg, vg, kc, vc;
    for (int i = 0; i < kSeqs; ++i)
      for (int64_t p = 0; p < len[i]; ++p)
        for (int64_t j = 0; j < row; ++j) {
          const size_t at = size_t((bt[size_t(i * kSeqBlocks + p / 16)] * 16 + p % 16) * row + j);
          kg.push_back(bf16_to_f32(kh[at]));
          vg.push_back(bf16_to_f32(vh[at]));
          kc.push_back(kref[at]);
          vc.push_back(vref[at]);
        }
    EXPECT_REL(kg, kc, test::kKvCacheRel);
    EXPECT_REL(vg, vc, test::kKvCacheRel);
  }
}

// One sequence: a prefill, decode steps that split the keys over many blocks (some empty), a chunk of 20, and 140
// tokens (the CUDA-core kernel unsplit in the comparison).
const std::vector<AttnBatch> kOneSequence{{{0, 37}}, {{0, 1}}, {{0, 3}}, {{0, 20}}, {{0, 140}}};

TEST(CudaAttention, LayerMatchesCpuOverPagedCache) {
  HLWQ_REQUIRE_CUDA();
  check_attention(16, 2, 256, 64, 40, kOneSequence);  // Qwen3.5/3.6: 8 query heads per kv head, 16-byte K/V loads
}

// The plan's host part (no device needed): blocks inside one long sequence each, covering it once, at most
// block_tokens long, most keys first; the other sequences' tokens in batch order for the CUDA-core kernel.
TEST(AttendPlan, BlocksCoverLongSequencesAndListTheRest) {
  const std::vector<cuda::AttendSeq> seqs{{0, 40, 0}, {40, 1, 30}, {41, 17, 5}, {58, 3, 0}, {61, 100, 20}};
  const cuda::AttendPlanHost p = cuda::attend_plan_blocks(seqs, 8);
  ASSERT_EQ(p.n_tiles, 5 + 3 + 13);
  ASSERT_EQ(p.n_core, 4);
  ASSERT_EQ(int64_t(p.words.size()), 2 * p.n_tiles + p.n_core);
  EXPECT_LE(int64_t(p.words.size()), cuda::attend_plan_capacity(161));
  std::vector<int> covered(161, 0);
  int prev_keys = 1 << 30;
  for (int64_t i = 0; i < p.n_tiles; ++i) {
    const int first = p.words[size_t(2 * i)], end = p.words[size_t(2 * i + 1)];
    ASSERT_LT(first, end);
    EXPECT_LE(end - first, 8);
    const auto q = std::find_if(seqs.begin(), seqs.end(), [&](const cuda::AttendSeq& s) {
      return first >= s.t0 && first < s.t0 + s.n;
    });
    ASSERT_NE(q, seqs.end());
    EXPECT_GE(q->n, cuda::kAttendPrefillMinTokens) << "block at " << first;
    EXPECT_LE(end, q->t0 + q->n) << "block [" << first << ", " << end << ") leaves its sequence";
    const int keys = int(q->pos0 + (end - q->t0));
    EXPECT_LE(keys, prev_keys) << "block at " << first << " after one with fewer keys";
    prev_keys = keys;
    for (int t = first; t < end; ++t) ++covered[size_t(t)];
  }
  const std::vector<int> core(p.words.begin() + 2 * p.n_tiles, p.words.end());
  EXPECT_EQ(core, (std::vector<int>{40, 58, 59, 60}));
  for (int t : core) ++covered[size_t(t)];
  for (int t = 0; t < 161; ++t) EXPECT_EQ(covered[size_t(t)], 1) << "token " << t;
  // no long sequence, or no tensor-core kernel: no words (every token on the CUDA cores in batch order)
  EXPECT_TRUE(cuda::attend_plan_blocks({{0, 15, 0}, {15, 1, 9}}, 8).words.empty());
  EXPECT_TRUE(cuda::attend_plan_blocks(seqs, 0).words.empty());
  // sequences that leave a gap or overlap are refused
  EXPECT_THROW(cuda::attend_plan_blocks({{0, 20, 0}, {21, 5, 0}}, 8), Error);
  EXPECT_THROW(cuda::attend_plan_blocks({{0, 20, 0}, {19, 5, 0}}, 8), Error);
}

// Batches of several sequences, as the server schedules them: prefills side by side (tensor-core blocks of different
// sequences in one launch, their key counts out of batch order), prefill chunks beside decode steps and short
// chunks (both kernels in one batch, the CUDA-core one on a token list), and a batch of decode steps alone.
TEST(CudaAttention, BatchesOfSeveralSequences) {
  HLWQ_REQUIRE_CUDA();
  const std::vector<AttnBatch> batches{{{0, 40}, {1, 16}, {2, 5}},
                                       {{1, 1}, {0, 33}, {3, 70}},
                                       {{0, 1}, {1, 1}, {2, 1}, {3, 1}},
                                       {{2, 17}, {0, 2}, {1, 100}, {3, 15}}};
  check_attention(16, 2, 256, 64, 42, batches);
  check_attention(4, 2, 64, 16, 43, batches);  // the demo model's groups: 8-token rows, 32-token blocks
}

// Other groups and head widths: the kernel's two warps per key take halves of a kv head's query heads (unequal for
// odd counts: 3 = 2 + 1, 7 = 4 + 3), and a lane loads D/32 bf16 of a K/V row in one 4-, 8- or 16-byte load; the
// prefill kernel's row tiles hold 16, 8, 4 or 2 tokens (groups of 1, 2, 3–4 and 7–8 heads; 4 / 2 is the demo model's).
TEST(CudaAttention, OtherGroupsAndHeadWidths) {
  HLWQ_REQUIRE_CUDA();
  for (const auto& [Hq, Hkv, D, r] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{4, 1, 128, 32}, {6, 2, 64, 32},
                                      {14, 2, 128, 64}, {2, 2, 256, 64}, {4, 2, 64, 16}}) {
    SCOPED_TRACE(testing::Message() << "Hq=" << Hq << " Hkv=" << Hkv << " D=" << D);
    check_attention(Hq, Hkv, D, r, uint64_t(41 + Hq), kOneSequence);
  }
}

}  // namespace
}  // namespace hlwq
