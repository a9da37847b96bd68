// hlwq_bench_cuda_forward: the whole Qwen3.6-35B-A3B forward on the GPU from hlwq's CUDA kernels, on random
// device-made weights of the real shapes (40 layers: 30 Gated DeltaNet + 10 gated attention, each with a
// 256-expert top-8 MoE and a shared expert, INT4 CT-packed; bf16 router, in_proj_b/a and lm_head [248320, 2048]).
// No checkpoint and no model code: this measures the kernels composed the way the backend will run them.
// Decode: batch B ∈ {1, 4, 8, 16} sequences, each at position 512 of its own paged KV cache and GDN state slot;
// one step (embedding → 40 layers → final norm → lm_head → device argmax) captured as one CUDA graph; median of
// 20 replays after warm-up. Speed of light: the bytes one step must read or write (weights of the experts
// actually routed, counted from the routing of a plain run, every other weight, the GDN states read and written,
// the cached K/V read, the logits written) over the read-kernel bandwidth measured in the same run.
// Breakdown: the same step split into separate graphs (mixers, MoE blocks, lm_head + argmax), and the step
// launched eagerly (no graph) to show the launch cost. Prefill: one sequence of P ∈ {512, 4096} tokens, and four
// prompts of 1024 prefilled in one batch, eager, timed with events, with the GDN delta rule chunked (gdn_chunked.cuh)
// and as a token loop, and split by part (attention also with every token on the CUDA-core kernel).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/gdn.cuh"
#include "backend/cuda/gdn_chunked.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/moe.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/sampling.cuh"
#include "bench_util.cuh"

namespace hlwq {
namespace {

using cuda::DeviceBuffer;
using cuda::PackedFormat;
using cuda::PackedLinear;

constexpr int64_t H = 2048, V = 248320, NL = 40, E = 256, K_ACT = 8, I = 512;
constexpr int64_t Hk = 16, Hv = 32, DK = 128, DV = 128, KC = 4, C = 2 * Hk * DK + Hv * DV;
constexpr int64_t Hq = 16, Hkv = 2, D = 256, R = 64, KVROW = Hkv * D;
constexpr int64_t MAX_SEQ = 16, CTX = 512, BLK = 16;
constexpr int64_t BLOCKS_PER_SEQ = (4096 + 64) / BLK + 1;  // room for the 4096-token prefill

uint64_t g_seed = 1;

PackedLinear rand_lin(PackedFormat f, int64_t out, int64_t in) {
  PackedLinear w;
  w.format = f;
  w.out = out;
  w.in = in;
  w.out_pad = (out + 31) / 32 * 32;
  w.in_pad = (in + 127) / 128 * 128;
  if (f == PackedFormat::int4) {
    w.q = DeviceBuffer<uint32_t>(size_t(w.out_pad * w.in_pad / 8), "int4");
    w.scale = DeviceBuffer<float>(size_t(w.out_pad * w.in_pad / 128), "scales");
    bench::fill_random(w.q.get(), int64_t(w.q.size()), g_seed++);
    bench::fill_scales(w.scale.get(), int64_t(w.scale.size()), g_seed++);
  } else {
    w.q = DeviceBuffer<uint32_t>(size_t(w.out_pad * w.in_pad / 2), "bf16");
    bench::fill_bf16(w.q.get(), int64_t(w.q.size()), g_seed++);
  }
  return w;
}

// n floats uniform in ±scale (a host LCG; small vectors only)
DeviceBuffer<float> rand_vec(int64_t n, float scale) {
  std::vector<float> h(static_cast<size_t>(n));
  uint64_t z = g_seed++ * 0x9E3779B97F4A7C15ull;
  for (auto& x : h) {
    z = z * 6364136223846793005ull + 1442695040888963407ull;
    x = scale * (float(int64_t(z >> 40) % 2001) / 1000.f - 1.f);
  }
  return DeviceBuffer<float>(h, "vec");
}

struct Layer {
  bool attn = false;
  DeviceBuffer<float> in_norm, post_norm;
  // GDN
  PackedLinear qkvz, ba, out;
  DeviceBuffer<float> conv_w, A_log, dt_bias, gnorm, conv_state, S;
  // attention
  PackedLinear qkv, o;
  DeviceBuffer<float> qn, kn;
  DeviceBuffer<uint16_t> kp, vp;
  cuda::MoeLayerDev moe;
};

// A branch beside the main stream (as the engine's: the GDN b, a GEMM runs next to q, k, v, z and the conv).
struct Branch {
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  Branch() {
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "side stream");
    HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), "event");
    HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "event");
  }
  ~Branch() {
    cudaEventDestroy(fork);
    cudaEventDestroy(join);
    cudaStreamDestroy(side);
  }
  Branch(const Branch&) = delete;
  Branch& operator=(const Branch&) = delete;
};

struct Scratch {
  int64_t T;
  DeviceBuffer<float> h, xn, proj, ba, act, o, y, logits, attn_ws;
  DeviceBuffer<uint64_t> argmax_ws;
  DeviceBuffer<uint32_t> xf;
  cuda::MoeWorkspace moe;
  DeviceBuffer<int> ids, pos, bt_off, nan;
  DeviceBuffer<cuda::GdnSeq> seqs;
  int n_seq;
  DeviceBuffer<int> attn_words;  // the attention plan's words (attention.cuh; none in a decode step)
  cuda::AttendPlan attn_plan;
  DeviceBuffer<float> gdn_ws;  // prefill: the chunked GDN's workspace (empty: the token loop)
  const Branch* br = nullptr;
};

struct Model {
  std::vector<Layer> layers;
  DeviceBuffer<uint16_t> embed;
  DeviceBuffer<float> final_norm, inv_freq;
  PackedLinear lm_head;
  DeviceBuffer<int> bt;  // [MAX_SEQ, BLOCKS_PER_SEQ] block tables
  int64_t weight_bytes_dense = 0;  // every non-expert weight read per step
};

Model build() {
  Model m;
  m.embed = DeviceBuffer<uint16_t>(size_t(V * H), "embed");
  bench::fill_bf16(m.embed.get(), V * H / 2, g_seed++);
  m.final_norm = rand_vec(H, 0.1f);
  std::vector<float> invf;
  for (int64_t i = 0; i < R / 2; ++i) invf.push_back(1.f / std::pow(1e7f, float(2 * i) / float(R)));
  m.inv_freq = DeviceBuffer<float>(invf, "inv_freq");
  m.lm_head = rand_lin(PackedFormat::bf16, V, H);
  m.weight_bytes_dense += m.lm_head.bytes();
  std::vector<int> bt(size_t(MAX_SEQ * BLOCKS_PER_SEQ));
  for (size_t i = 0; i < bt.size(); ++i) bt[i] = int((i * 7919) % bt.size());  // scrambled pages
  m.bt = DeviceBuffer<int>(bt, "block tables");
  for (int64_t l = 0; l < NL; ++l) {
    Layer L;
    L.attn = (l + 1) % 4 == 0;
    L.in_norm = rand_vec(H, 0.1f);
    L.post_norm = rand_vec(H, 0.1f);
    if (L.attn) {
      L.qkv = rand_lin(PackedFormat::int4, Hq * 2 * D + 2 * KVROW, H);
      L.o = rand_lin(PackedFormat::int4, H, Hq * D);
      L.qn = rand_vec(D, 0.1f);
      L.kn = rand_vec(D, 0.1f);
      const int64_t n = MAX_SEQ * BLOCKS_PER_SEQ * BLK * KVROW;
      L.kp = DeviceBuffer<uint16_t>(size_t(n), "K pages");
      L.vp = DeviceBuffer<uint16_t>(size_t(n), "V pages");
      bench::fill_bf16(L.kp.get(), n / 2, g_seed++);
      bench::fill_bf16(L.vp.get(), n / 2, g_seed++);
      m.weight_bytes_dense += L.qkv.bytes() + L.o.bytes();
    } else {
      L.qkvz = rand_lin(PackedFormat::int4, C + Hv * DV, H);
      L.ba = rand_lin(PackedFormat::bf16, 2 * Hv, H);
      L.out = rand_lin(PackedFormat::int4, H, Hv * DV);
      L.conv_w = rand_vec(C * KC, 0.5f);
      L.A_log = rand_vec(Hv, 1.f);
      L.dt_bias = rand_vec(Hv, 1.f);
      L.gnorm = rand_vec(DV, 1.f);
      L.conv_state = DeviceBuffer<float>(size_t(MAX_SEQ * (KC - 1) * C), "conv state");
      L.S = DeviceBuffer<float>(size_t(MAX_SEQ * Hv * DK * DV), "S");
      HLWQ_CUDA_CHECK(cudaMemset(L.conv_state.get(), 0, L.conv_state.bytes()), "conv state");
      HLWQ_CUDA_CHECK(cudaMemset(L.S.get(), 0, L.S.bytes()), "S");
      m.weight_bytes_dense += L.qkvz.bytes() + L.ba.bytes() + L.out.bytes();
    }
    auto& mo = L.moe;
    mo.H = H, mo.E = E, mo.k = K_ACT, mo.I = I, mo.n_shared = 1;
    mo.router = rand_lin(PackedFormat::bf16, E + 1, H);
    m.weight_bytes_dense += mo.router.bytes();
    for (int64_t e = 0; e <= E; ++e) {
      mo.gate_up.push_back(rand_lin(PackedFormat::int4, 2 * I, H));
      mo.down.push_back(rand_lin(PackedFormat::int4, H, I));
    }
    std::vector<const PackedLinear*> gu, dn;
    for (int64_t e = 0; e <= E; ++e) gu.push_back(&mo.gate_up[size_t(e)]), dn.push_back(&mo.down[size_t(e)]);
    mo.gu = cuda::make_grouped(gu, "gate_up");
    mo.dn = cuda::make_grouped(dn, "down");
    m.layers.push_back(std::move(L));
  }
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "building the model");
  return m;
}

// Scratch for a batch of T tokens in n_seq sequences (decode: T = n_seq, one token each at position CTX;
// prefill: n_seq sequences of T / n_seq tokens each from position 0, as prompts prefilled together).
Scratch make_scratch(const Model& m, int64_t T, int n_seq) {
  Scratch s;
  s.T = T;
  s.n_seq = n_seq;
  s.h = DeviceBuffer<float>(size_t(T * H), "h");
  s.xn = DeviceBuffer<float>(size_t(T * H), "xn");
  s.proj = DeviceBuffer<float>(size_t(T * (C + Hv * DV)), "proj");
  s.ba = DeviceBuffer<float>(size_t(T * 2 * Hv), "ba");
  s.act = DeviceBuffer<float>(size_t(T * C), "act");
  s.o = DeviceBuffer<float>(size_t(T * Hq * D), "o");
  s.y = DeviceBuffer<float>(size_t(T * H), "y");
  s.logits = DeviceBuffer<float>(size_t(std::min<int64_t>(T, MAX_SEQ) * V), "logits");
  s.argmax_ws = DeviceBuffer<uint64_t>(size_t(cuda::argmax_workspace_words(std::min<int64_t>(T, MAX_SEQ), V)), "argmax ws");
  s.xf = DeviceBuffer<uint32_t>(size_t(cuda::xfrag_words(T, 4096)), "xfrag");
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  s.attn_ws = DeviceBuffer<float>(
      size_t(cuda::attend_workspace_floats(T, {int(Hq), int(Hkv), int(D), int(R), 1e-6f}, sms)), "attend ws");
  s.moe = cuda::make_moe_workspace(m.layers[0].moe, T);
  std::vector<int> ids(static_cast<size_t>(T)), pos(static_cast<size_t>(T)), off(static_cast<size_t>(T));
  std::vector<cuda::GdnSeq> seqs;
  const bool decode = n_seq == T;
  const int64_t per = T / n_seq;  // tokens of each sequence
  for (int64_t t = 0; t < T; ++t) {
    ids[size_t(t)] = int((t * 104729) % V);
    pos[size_t(t)] = int(decode ? CTX : t % per);
    off[size_t(t)] = int(t / per * BLOCKS_PER_SEQ);
  }
  for (int i = 0; i < n_seq; ++i) seqs.push_back({int(i * per), int(per), i});
  s.ids = DeviceBuffer<int>(ids, "ids");
  s.pos = DeviceBuffer<int>(pos, "pos");
  s.bt_off = DeviceBuffer<int>(off, "bt_off");
  s.nan = DeviceBuffer<int>(size_t(T), "nan");
  s.seqs = DeviceBuffer<cuda::GdnSeq>(seqs, "seqs");
  std::vector<cuda::AttendSeq> aseqs;
  for (const cuda::GdnSeq& q : seqs) aseqs.push_back({q.t0, q.n, pos[size_t(q.t0)]});
  const cuda::AttendPlanHost plan = cuda::attend_plan(aseqs, {int(Hq), int(Hkv), int(D), int(R), 1e-6f});
  if (!plan.words.empty()) s.attn_words = DeviceBuffer<int>(plan.words, "attention plan");
  s.attn_plan = {s.attn_words.get(), plan.n_tiles, plan.n_core};
  bench::fill_random(s.h.get(), T * H, 3, 0x803FFFFFu, 0x3F000000u);
  return s;
}

void linear(const PackedLinear& w, const float* x, int64_t T, Scratch& s, float* y, int64_t ldy, cudaStream_t st) {
  cuda::pack_activations(x, w.in, T, w.in, nullptr, T, w.in_pad, s.xf.get(), st);
  cuda::gemm(w, s.xf.get(), T, y, ldy, st);
}

// The engine's schedule (model.cpp through CudaBackend): every norm also writes the fragments of the GEMM that reads
// its output next, and each MoE block's weighted sum is the residual of the norm after it.

// The norm before layer 0's mixer (the others are fused into the MoE block before them).
void first_norm(const Model& m, Scratch& s, cudaStream_t st) {
  cuda::rmsnorm_zero_centred(s.h.get(), nullptr, m.layers[0].in_norm.get(), s.T, H, 1e-6f, s.xn.get(), st,
                             {nullptr, 0, s.xf.get(), H});
}

// y = mixer(xn), reading the fragments of xn the norm before wrote into s.xf.
void mixer(const Model& m, Layer& L, Scratch& s, cudaStream_t st) {
  const int64_t T = s.T;
  if (L.attn) {
    const cuda::AttnDimsDev d{int(Hq), int(Hkv), int(D), int(R), 1e-6f};
    const int64_t ld = L.qkv.out, qw = Hq * 2 * D;
    cuda::gemm(L.qkv, s.xf.get(), T, s.proj.get(), ld, st);
    cuda::qk_norm_rope_store(s.proj.get(), ld, s.proj.get() + qw, ld, s.proj.get() + qw + KVROW, ld, L.qn.get(),
                             L.kn.get(), m.inv_freq.get(), s.pos.get(), s.bt_off.get(), m.bt.get(), L.kp.get(),
                             L.vp.get(), T, d, st);
    cuda::attend(s.proj.get(), ld, s.pos.get(), s.bt_off.get(), m.bt.get(), L.kp.get(), L.vp.get(), T, s.attn_plan, d, s.o.get(),
                 s.attn_ws.get(), int64_t(s.attn_ws.size()), st);
    linear(L.o, s.o.get(), T, s, s.y.get(), H, st);
  } else {
    const cuda::GdnDimsDev d{int(Hk), int(Hv), int(DK), int(DV), int(KC), 1e-6f};
    const int64_t ld = L.qkvz.out;
    HLWQ_CUDA_CHECK(cudaEventRecord(s.br->fork, st), "fork");
    HLWQ_CUDA_CHECK(cudaStreamWaitEvent(s.br->side, s.br->fork, 0), "fork");
    cuda::gemm(L.ba, s.xf.get(), T, s.ba.get(), L.ba.out, s.br->side);
    HLWQ_CUDA_CHECK(cudaEventRecord(s.br->join, s.br->side), "join");
    cuda::gemm(L.qkvz, s.xf.get(), T, s.proj.get(), ld, st);
    cuda::gdn_conv(s.proj.get(), ld, s.seqs.get(), s.n_seq, int(T / s.n_seq), L.conv_w.get(), L.conv_state.get(), d,
                   s.act.get(), st);
    HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, s.br->join, 0), "join");
    // the gated norm writes the out-projection's activation fragments too, as the engine's does
    cuda::gdn_delta_rule(s.act.get(), s.proj.get() + C, ld, s.ba.get(), L.ba.out, L.A_log.get(), L.dt_bias.get(),
                         L.gnorm.get(), s.seqs.get(), s.n_seq, int(T / s.n_seq), L.S.get(), d, T,
                         s.gdn_ws.size() ? s.gdn_ws.get() : nullptr, s.o.get(), st, s.xf.get(), L.out.in_pad);
    cuda::gemm(L.out, s.xf.get(), T, s.y.get(), H, st);
  }
}

// h += y; xn = post-norm(h) (+ x_tok's fragments); h += moe(xn); xn = the next layer's input norm of h (+ s.xf's
// fragments), or the final norm after the last layer.
void moe_block(const Model& m, size_t l, Scratch& s, cudaStream_t st) {
  const Layer& L = m.layers[l];
  cuda::rmsnorm_zero_centred(s.h.get(), s.y.get(), L.post_norm.get(), s.T, H, 1e-6f, s.xn.get(), st,
                             {nullptr, 0, s.moe.x_tok.get(), H});
  const bool last = l + 1 == m.layers.size();
  cuda::MoeNorms norms;
  norms.x_packed = true;
  norms.h = s.h.get();
  norms.w = last ? m.final_norm.get() : m.layers[l + 1].in_norm.get();
  norms.eps = 1e-6f;
  norms.y = s.xn.get();
  if (!last) norms.after.xfrag = s.xf.get(), norms.after.in_pad = H;
  cuda::moe_forward(L.moe, s.moe, s.xn.get(), s.T, nullptr, false, st, {}, nullptr, norms);
}

void head(Model& m, Scratch& s, cudaStream_t st) {
  const int64_t rows = std::min<int64_t>(s.T, MAX_SEQ);  // prefill: logits of the last rows only
  linear(m.lm_head, s.xn.get() + (s.T - rows) * H, rows, s, s.logits.get(), V, st);
  cuda::argmax(s.logits.get(), rows, V, V, s.ids.get(), s.nan.get(), s.argmax_ws.get(), int64_t(s.argmax_ws.size()), st);
}

void layers(Model& m, Scratch& s, cudaStream_t st) {
  for (size_t l = 0; l < m.layers.size(); ++l) {
    mixer(m, m.layers[l], s, st);
    moe_block(m, l, s, st);
  }
}

void step(Model& m, Scratch& s, cudaStream_t st) {
  cuda::embed(s.ids.get(), m.embed.get(), s.T, H, s.h.get(), st);
  first_norm(m, s, st);
  layers(m, s, st);
  head(m, s, st);
}

}  // namespace
}  // namespace hlwq

int main() {
  using namespace hlwq;
  try {
    cudaStream_t st;
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    const auto ceil = bench::measure_ceilings(st);
    std::printf("ceilings: read kernel %.0f GB/s, copy kernel %.0f GB/s\n", ceil.read, ceil.copy_kernel);
    Model m = build();
    const Branch br;
    size_t free_b = 0, total_b = 0;
    HLWQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b), "mem info");
    std::printf("model built: %.1f GB on the device\n", double(total_b - free_b) / 1e9);
    const double expert_b = double(m.layers[0].moe.expert_bytes());
    for (int64_t B : {1, 4, 8, 16}) {
      Scratch s = make_scratch(m, B, int(B));
      s.br = &br;
      // a plain run: routing → distinct experts per layer for the byte count; checks the step runs at all
      double experts = 0;
      cuda::embed(s.ids.get(), m.embed.get(), B, H, s.h.get(), st);
      first_norm(m, s, st);
      for (size_t l = 0; l < m.layers.size(); ++l) {
        mixer(m, m.layers[l], s, st);
        moe_block(m, l, s, st);
        HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "plain step");
        const auto ids = s.moe.topk_ids.download();
        experts += double(std::set<int>(ids.begin(), ids.begin() + B * K_ACT).size() + 1);
      }
      head(m, s, st);
      HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "plain step");
      const auto nan = s.nan.download();
      int nans = 0;
      for (int64_t i = 0; i < B; ++i) nans += nan[size_t(i)];
      const double state = 30.0 * B * (double(Hv * DK * DV) + double((KC - 1) * C)) * 4 * 2;  // read + write
      const double kv = 10.0 * B * (CTX + 1) * KVROW * 2 * 2;
      const double bytes = double(m.weight_bytes_dense) + experts * expert_b + state + kv + double(B) * V * 4;
      const double sol_us = bytes / (ceil.read * 1e3);
      const double us = bench::time_graph(st, 1, [&](int) { step(m, s, st); }, 3, 20, /*pdl=*/true);
      const double no_pdl = bench::time_graph(st, 1, [&](int) { step(m, s, st); }, 3, 20, /*pdl=*/false);
      const double eager = bench::time_eager(st, [&] { step(m, s, st); }, 5);
      const double mix = bench::time_graph(st, 1, [&](int) { for (auto& L : m.layers) mixer(m, L, s, st); }, 2, 10, true);
      const double moe = bench::time_graph(st, 1, [&](int) {
        for (size_t l = 0; l < m.layers.size(); ++l) moe_block(m, l, s, st);
      }, 2, 10, true);
      const double hd = bench::time_graph(st, 1, [&](int) { head(m, s, st); }, 2, 10, true);
      std::printf("row decode B=%-2lld | step %8.1f us | %7.1f tok/s | SoL %6.1f us (%.2f GB: experts %.0f MB, "
                  "other weights %.0f MB, GDN state %.0f MB, KV %.0f MB) | %4.1f %% of SoL | eager %8.1f us | "
                  "mixers %7.1f us, MoE %7.1f us, lm_head+argmax %6.1f us | NaN rows %d | graph without PDL %8.1f us\n",
                  (long long)B, us, double(B) / (us * 1e-6), sol_us, bytes / 1e9, experts * expert_b / 1e6,
                  double(m.weight_bytes_dense) / 1e6, state / 1e6, kv / 1e6, 100.0 * sol_us / us, eager, mix, moe, hd,
                  nans, no_pdl);
      std::fflush(stdout);
      {  // per-op time over all 40 layers (each op alone in a graph, same inputs); B = 4 too since its PDL overlap
         // shrank at 49bd52a while its kernels did not slow (bench/cuda/NOTES.md, tenth session)
        const cuda::GdnDimsDev gd{int(Hk), int(Hv), int(DK), int(DV), int(KC), 1e-6f};
        const cuda::AttnDimsDev ad{int(Hq), int(Hkv), int(D), int(R), 1e-6f};
        auto op = [&](const char* name, const std::function<void(Layer&)>& f) {
          const double t = bench::time_graph(st, 1, [&](int) { for (auto& L : m.layers) f(L); }, 2, 10, true);
          std::printf("row   op B=%-2lld %-28s %8.1f us per step\n", (long long)B, name, t);
        };
        op("gdn qkvz gemm (int4)", [&](Layer& L) { if (!L.attn) cuda::gemm(L.qkvz, s.xf.get(), B, s.proj.get(), L.qkvz.out, st); });
        op("gdn ba gemm (bf16)", [&](Layer& L) { if (!L.attn) cuda::gemm(L.ba, s.xf.get(), B, s.ba.get(), L.ba.out, st); });
        op("gdn conv", [&](Layer& L) {
          if (!L.attn) cuda::gdn_conv(s.proj.get(), L.qkvz.out, s.seqs.get(), s.n_seq, 1, L.conv_w.get(), L.conv_state.get(), gd, s.act.get(), st);
        });
        op("gdn recurrent, writing fragments", [&](Layer& L) {
          if (!L.attn)
            cuda::gdn_delta_rule(s.act.get(), s.proj.get() + C, L.qkvz.out, s.ba.get(), L.ba.out, L.A_log.get(),
                                 L.dt_bias.get(), L.gnorm.get(), s.seqs.get(), s.n_seq, 1, L.S.get(), gd, B, nullptr,
                                 s.o.get(), st, s.xf.get(), L.out.in_pad);
        });
        op("gdn out gemm (int4)", [&](Layer& L) { if (!L.attn) cuda::gemm(L.out, s.xf.get(), B, s.y.get(), H, st); });
        op("attn qkv gemm (int4)", [&](Layer& L) { if (L.attn) cuda::gemm(L.qkv, s.xf.get(), B, s.proj.get(), L.qkv.out, st); });
        op("attn norm+rope+store", [&](Layer& L) {
          if (L.attn) {
            const int64_t ld = L.qkv.out, qw = Hq * 2 * D;
            cuda::qk_norm_rope_store(s.proj.get(), ld, s.proj.get() + qw, ld, s.proj.get() + qw + KVROW, ld, L.qn.get(),
                                     L.kn.get(), m.inv_freq.get(), s.pos.get(), s.bt_off.get(), m.bt.get(), L.kp.get(),
                                     L.vp.get(), B, ad, st);
          }
        });
        op("attend (+combine)", [&](Layer& L) {
          if (L.attn)
            cuda::attend(s.proj.get(), L.qkv.out, s.pos.get(), s.bt_off.get(), m.bt.get(), L.kp.get(), L.vp.get(), B, s.attn_plan, ad,
                         s.o.get(), s.attn_ws.get(), int64_t(s.attn_ws.size()), st);
        });
        op("attn o gemm (int4)", [&](Layer& L) { if (L.attn) cuda::gemm(L.o, s.xf.get(), B, s.y.get(), H, st); });
        // the norms as the step runs them: each also writes fragments, the second with the MoE sum as residual
        // (moe_combine fused; the slot plan is the last routing's)
        op("rmsnorm x2 (one + MoE sum)", [&](Layer& L) {
          cuda::rmsnorm_zero_centred(s.h.get(), s.y.get(), L.post_norm.get(), B, H, 1e-6f, s.xn.get(), st,
                                     {nullptr, 0, s.moe.x_tok.get(), H});
          cuda::rmsnorm_zero_centred(s.h.get(), s.moe.y.get(), L.in_norm.get(), B, H, 1e-6f, s.xn.get(), st,
                                     {s.moe.tok_slot.get(), K_ACT + 1, s.xf.get(), H});
        });
        op("pack activations (attention o)", [&](Layer& L) {
          if (L.attn) cuda::pack_activations(s.o.get(), Hq * D, B, Hq * D, nullptr, B, Hq * D, s.xf.get(), st);
        });
        op("moe block (router to combine)", [&](Layer& L) {
          cuda::moe_forward(L.moe, s.moe, s.xn.get(), B, s.h.get(), true, st, {}, nullptr, {true});
        });
      }
    }
    for (const auto& shape : {std::pair<int64_t, int>{512, 1}, {4096, 1}, {4096, 4}}) {
      const int64_t P = shape.first;  // named, not structured bindings: the part lambdas below capture them
      const int n_seq = shape.second;
      Scratch s = make_scratch(m, P, n_seq);
      const std::string label = "P=" + (n_seq == 1 ? std::to_string(P) : std::to_string(n_seq) + "x" + std::to_string(P / n_seq));
      s.br = &br;
      const cuda::GdnDimsDev gd{int(Hk), int(Hv), int(DK), int(DV), int(KC), 1e-6f};
      const double loop = bench::time_eager(st, [&] { step(m, s, st); }, 3);
      s.gdn_ws = DeviceBuffer<float>(size_t(cuda::gdn_chunked_workspace_floats(P, gd)), "chunked GDN workspace");
      const double chunked = bench::time_eager(st, [&] { step(m, s, st); }, 3);
      std::printf("row prefill %-7s | %10.1f us | %8.1f tok/s (eager; GDN chunked) | GDN as a token loop %10.1f us\n",
                  label.c_str(), chunked, double(P) / (chunked * 1e-6), loop);
      // where a prefill goes: each part over the 40 layers, eager, same inputs
      auto part = [&](const char* name, const std::function<void(Layer&)>& f) {
        const double t = bench::time_eager(st, [&] { for (auto& L : m.layers) f(L); }, 2);
        std::printf("row   prefill op %-7s %-32s %10.1f us\n", label.c_str(), name, t);
      };
      part("mixers (GDN chunked, attention)", [&](Layer& L) { mixer(m, L, s, st); });
      part("  gdn delta rule, chunked", [&](Layer& L) {
        if (!L.attn)
          cuda::gdn_delta_rule(s.act.get(), s.proj.get() + C, L.qkvz.out, s.ba.get(), L.ba.out, L.A_log.get(),
                               L.dt_bias.get(), L.gnorm.get(), s.seqs.get(), n_seq, int(P / n_seq), L.S.get(), gd,
                               P, s.gdn_ws.get(), s.o.get(), st);
      });
      part("  gdn delta rule, token loop", [&](Layer& L) {
        if (!L.attn)
          cuda::gdn_delta_rule(s.act.get(), s.proj.get() + C, L.qkvz.out, s.ba.get(), L.ba.out, L.A_log.get(),
                               L.dt_bias.get(), L.gnorm.get(), s.seqs.get(), n_seq, int(P / n_seq), L.S.get(), gd,
                               P, nullptr, s.o.get(), st);
      });
      // the mixers' other parts (the projections read their fragments as the step leaves them in s.xf)
      const cuda::AttnDimsDev ad{int(Hq), int(Hkv), int(D), int(R), 1e-6f};
      part("  dense GEMMs (qkvz, ba, out, qkv, o)", [&](Layer& L) {
        for (const PackedLinear* w : L.attn ? std::vector<const PackedLinear*>{&L.qkv, &L.o}
                                            : std::vector<const PackedLinear*>{&L.qkvz, &L.ba, &L.out})
          cuda::gemm(*w, s.xf.get(), P, s.proj.get(), w->out, st);
      });
      part("  dense GEMMs, fragment kernel", [&](Layer& L) {  // the same without gemm_tiled.cuh's kernel
        for (const PackedLinear* w : L.attn ? std::vector<const PackedLinear*>{&L.qkv, &L.o}
                                            : std::vector<const PackedLinear*>{&L.qkvz, &L.ba, &L.out})
          cuda::gemm_fragment(*w, s.xf.get(), P, s.proj.get(), w->out, st);
      });
      part("  attention (attend)", [&](Layer& L) {
        if (L.attn)
          cuda::attend(s.proj.get(), L.qkv.out, s.pos.get(), s.bt_off.get(), m.bt.get(), L.kp.get(), L.vp.get(), P,
                       s.attn_plan, ad, s.o.get(), s.attn_ws.get(), int64_t(s.attn_ws.size()), st);
      });
      part("  attention, all on CUDA cores", [&](Layer& L) {  // no plan: the kernel a batch got before attend_plan
        if (L.attn)
          cuda::attend(s.proj.get(), L.qkv.out, s.pos.get(), s.bt_off.get(), m.bt.get(), L.kp.get(), L.vp.get(), P, {},
                       ad, s.o.get(), s.attn_ws.get(), int64_t(s.attn_ws.size()), st);
      });
      part("moe blocks", [&](Layer& L) {
        cuda::moe_forward(L.moe, s.moe, s.xn.get(), P, s.h.get(), true, st, {}, nullptr, {true});
      });
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cuda_forward: %s\n", e.what());
    return 1;
  }
  return 0;
}
