// CudaBackend: the Backend (backend.h) on one CUDA device, with every weight resident (cuda_weights.h). Each op is
// the launch sequence that bench/cuda/NOTES.md maps it to; all of them go to one stream in order, so the schedule
// (src/model) needs no synchronisation of its own. What crosses PCIe per batch: the batch description (token ids,
// positions, block tables: one copy from pinned staging; with a replayed routing trace also its rows for the
// batch), then the logits rows asked for. Nothing is allocated after construction, except by set_route_trace (a
// benchmark's call, between forwards). With an expert cache, moe_forward may fork a copy stream per layer for
// prefetch (moe_prefetch.cuh) and joins it before the next layer's plan; the recorded graphs carry the fork/join.
//
// Decode batches (every sequence one token) are recorded as a CUDA graph per batch size the first time and
// replayed afterwards: launch arguments depend only on T (the batch data lives in fixed device buffers), so one
// recording serves every later step of that size. Prefill batches run as plain launches (their shapes vary).
//
// Numerics differ from the CPU backend in one place: GEMM inputs are rounded to bf16 (the tensor-core path), a
// relative error of ≤ 2^-9 per activation; accumulation is fp32 everywhere, the KV cache bf16 (as the CPU default).
// Routed experts may run on the CPU (--n-cpu-moe K, --cpu-experts auto|all): cpu_experts.cuh, as a side branch of
// the same stream order (and of the decode graph).
// Dimension legend: T batch tokens, H hidden, V vocab, C = 2·Hk·dk + Hv·dv, D head_dim.
#include "backend/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/expert_jobs.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/cpu_experts.cuh"
#include "backend/cuda/cuda_weights.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/expert_store.h"
#include "backend/cuda/gdn.cuh"
#include "backend/cuda/gdn_chunked.cuh"
#include "backend/cuda/input_stats.cuh"
#include "backend/cuda/moe_prefetch.cuh"
#include "backend/cuda/moe_stream.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/pdl_graph.h"
#include "backend/cuda/sampling.cuh"
#include "core/error.h"
#include "core/progress.h"

namespace hlwq {
namespace {

using cuda::DeviceBuffer;
using cuda::PinnedBuffer;

// The KV page size the attention kernels are written for (attention.cuh).
constexpr int64_t kCudaKvBlockTokens = 16;
// Experts per staging buffer of the whole-layer stream (moe_stream.cuh): E/4, so that a layer takes at least four
// rounds and copy and compute overlap, at most 16 — Qwen3.6: rounds of 16 experts (~26 MB, ~0.5 ms over PCIe 5)
// keep the copy engine busy while the GPU computes the previous round; two buffers ≈ 51 MB.
int stream_slots(int64_t E) { return int(std::clamp<int64_t>(E / 4, 1, 16)); }
// Logits rows computed per lm_head pass: bounds the device logits buffer to ~256 MB at V = 248,320.
constexpr int64_t kLogitsBudgetBytes = int64_t(256) << 20;

// Token choice staging per row: a DeviceSamplerConfig, the draw u, the chosen id and the non-finite flag.
constexpr size_t kPickBytesPerRow = sizeof(cuda::DeviceSamplerConfig) + sizeof(double) + 2 * sizeof(int);

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& cfg, const ModelWeights& w, const BackendLimits& lim, const CudaBackendOptions& opt);
  ~CudaBackend() override;

  const char* name() const override { return "cuda"; }
  void begin_batch(const Batch& b) override;
  bool replay_layers() override;
  void end_layers() override;
  void embed(Act out) override;
  void rmsnorm(int layer, NormKind which, Act in, Act out) override;
  void add_rmsnorm(Act h, Act y, int layer, NormKind which, Act out) override;
  void gdn_mixer(int layer, Act in, Act out) override;
  void attn_mixer(int layer, Act in, Act out) override;
  // Routing runs inside moe_experts' launch sequence (moe.cuh: router GEMM, route + slot plan, grouped experts).
  void moe_route(int, Act) override {}
  bool moe_wants_hint() const override { return false; }
  void moe_hint(int, Act) override {}
  void moe_experts(int layer, Act in, Act out) override;
  void moe_experts_add_rmsnorm(int layer, Act in, Act h, Act y, int norm_layer, NormKind which, Act out) override;
  void lm_head(Act in, std::span<const int64_t> rows, float* logits) override;
  bool lm_head_sample(Act in, std::span<const int64_t> rows, int64_t n_valid, std::span<const RowSampling> how,
                      int32_t* ids) override;
  void lm_head_host(const float* x, int64_t n, float* logits) override;
  void read(Act a, float* dst) override;
  std::string memory_plan() const override { return plan_; }
  bool expert_cache_stats(ExpertCacheStats& out) const override;
  void reset_slot(int32_t slot) override;
  void copy_slot_state(int32_t from, int32_t to) override;
  void set_route_trace(std::shared_ptr<const RouteTrace> trace) override;
  int64_t begin_input_stats(const std::vector<std::string>& keys) override;
  LinearStatsMap take_input_stats() override;

 private:
  // Gives every MoE layer its expert slots (after everything else is allocated, so a budget sees the rest).
  void plan_expert_cache(int64_t device_bytes_used);
  // --cpu-experts auto: the per-expert costs of the two paths, measured now (cpu_split.h).
  void measure_split_costs();
  float* act(Act a) const;
  const float* norm_weight(int layer, NormKind which) const;
  // The fragments the norm `which` of `layer` writes beside its fp32 output for the GEMM that reads it next, or none
  // (norm.cuh): the input norm feeds the mixer's first projection through xf_, the post-attention norm the MoE
  // router through the workspace's x_tok, each only where that GEMM reads plain (not rotated) activations. The
  // consumers skip their pack exactly where this names a buffer.
  cuda::NormFusion norm_frags(int layer, NormKind which) const;
  void release_moe_input(NormKind which);  // before a norm that may write the MoE's x_tok
  // The MoE block of `layer` (moe.cuh), with the norm after it fused where norms.h is set; x_packed is set here.
  void run_moe(int layer, Act in, Act out, cuda::MoeNorms norms);
  void use_device() const { HLWQ_CUDA_CHECK(cudaSetDevice(opt_.device), "selecting CUDA device {}", opt_.device); }
  void sync(const char* what) const { HLWQ_CUDA_CHECK(cudaStreamSynchronize(st_), "{}", what); }
  void abandon_capture();
  // logits_ [n, V] (device) = lm_head(x rows): x fp32 [n_rows, H] on the device, row i of the result from row
  // slot_rows[i] (device ints; null: row i).
  void lm_head_rows(const float* x, int64_t n_rows, const int* slot_rows, int64_t n);
  // rows_ [n] (device) = rows [r0, r0 + n) of the batch, checked against it.
  void upload_rows(std::span<const int64_t> rows, size_t r0, int64_t n);

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  BackendLimits lim_;
  CudaBackendOptions opt_;
  // with a cache size or budget, the routed experts are placed after everything else (plan_expert_cache): packed as
  // routed_layout_, either straight onto the device (all fit) or into the pinned store experts_ behind a cache
  std::optional<cuda::ExpertLayout> routed_layout_;
  std::unique_ptr<cuda::HostExpertStore> experts_;  // with an expert cache: every routed expert, pinned
  std::unique_ptr<cuda::CpuExpertsDev> cpu_;        // with --n-cpu-moe or --cpu-experts: routed experts on the CPU
  CpuSplitCosts split_costs_;                        // --cpu-experts auto
  CpuExperts cpu_mode_ = CpuExperts::off;            // --cpu-experts as it runs (auto turns off: cpu_split_wired)
  cuda::ModelDev m_;
  std::string plan_;
  int64_t H_, V_, Tm_;
  float eps_;
  cuda::GdnDimsDev gd_{};
  cuda::AttnDimsDev ad_{};
  cudaStream_t st_ = nullptr;
  cudaEvent_t staged_ = nullptr;  // the batch upload has left the pinned staging buffer
  // a branch beside st_ for work that depends on the same inputs (the GDN b, a projection next to q, k, v, z)
  cudaStream_t side_ = nullptr;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;

  // batch description: device ints [ids Tm | pos Tm | bt_off Tm | block tables kv_blocks], staged in pinned memory
  PinnedBuffer stage_;
  PinnedBuffer stage_seqs_;
  PinnedBuffer stage_rows_;
  // token choice on the device: [configs Tm | u Tm | ids Tm | non-finite flags Tm], staged in pinned memory
  PinnedBuffer stage_pick_;
  DeviceBuffer<uint8_t> pick_;
  DeviceBuffer<int> batch_;
  DeviceBuffer<cuda::GdnSeq> seqs_;
  DeviceBuffer<int> rows_;
  int64_t T_ = 0;
  int n_seq_ = 0, max_n_ = 0;  // sequences of the batch, the most tokens of one
  cuda::AttendPlan attn_plan_;  // the batch's attention plan, inside batch_
  int64_t attn_block_tokens_ = 0;  // the tensor-core attention's block on this device (0: it does not run here)

  // workspace
  DeviceBuffer<float> h_, xn_, y_, proj_, ba_, gact_, o_, attn_ws_, logits_, lm_x_;
  DeviceBuffer<uint64_t> argmax_ws_;  // per-span candidates of the greedy choice (sampling.cuh)
  DeviceBuffer<float> gdn_ws_;  // chunked GDN for prefill (gdn_chunked.cuh); empty where the device cannot run it
  DeviceBuffer<uint32_t> xf_;
  cuda::MoeWorkspace moe_ws_;
  int64_t logits_rows_ = 0;

  // state: per GDN layer conv [slots, K-1, C] and S [slots, Hv, dk, dv]; per attention layer K and V pages
  std::vector<int> kind_index_;
  std::vector<DeviceBuffer<float>> conv_, S_;
  std::vector<DeviceBuffer<uint16_t>> kp_, vp_;

  // offload-trace: prefetch of the next layer's experts (with a cache), a replayed routing trace — its rows for
  // the batch go up with the batch description: pinned [n_layers, T, k] → trace_ids_
  std::unique_ptr<cuda::MoePrefetcher> prefetch_;
  // --moe-prefetch auto: which way each decode step runs (prefetch_now_), chosen by timing replayed steps of a probe
  // between step_t0_ and step_t1_ (the last one still to be read when timed_); steps of ≤ kMaxPrefetchTokens
  // counted each way
  std::optional<PrefetchArbiter> arbiter_;
  bool prefetch_now_ = false, timed_ = false, timed_with_ = false;
  int64_t timed_T_ = 0, steps_with_ = 0, steps_without_ = 0;
  cudaEvent_t step_t0_ = nullptr, step_t1_ = nullptr;
  std::unique_ptr<cuda::MoeLayerStreamer> stream_;  // with a cache: whole-layer streaming of large batches
  std::unique_ptr<RouteTraceCursor> trace_;
  std::unique_ptr<PinnedBuffer> stage_trace_;
  DeviceBuffer<int> trace_ids_;
  std::unique_ptr<cuda::InputStatsDev> stats_;  // while calibration statistics are collected

  // decode graphs by batch size T, recorded on first use: index T with the prefetch, S + 1 + T without
  std::vector<cudaGraphExec_t> graphs_;
  cudaGraphExec_t& graph_of_step() { return graphs_[size_t((prefetch_now_ ? 0 : lim_.max_seqs + 1) + T_)]; }
  void drop_graphs();
  bool capturing_ = false, replayed_ = false;
};

// [ids | pos | bt_off] at capacity offsets, then the used block tables and the attention plan's words
int64_t ints_of_batch(int64_t Tm, int64_t kv_blocks) { return 3 * Tm + kv_blocks + cuda::attend_plan_capacity(Tm); }

CudaBackend::CudaBackend(const ModelConfig& cfg, const ModelWeights& w, const BackendLimits& lim,
                         const CudaBackendOptions& opt)
    : cfg_(cfg), w_(w), lim_(lim), opt_(opt), H_(cfg.hidden_size), V_(cfg.vocab_size), Tm_(lim.max_batch_tokens),
      eps_(float(cfg.rms_norm_eps)),
      stage_((use_device(), size_t(ints_of_batch(lim.max_batch_tokens, lim.kv_blocks)) * sizeof(int)), "batch"),
      stage_seqs_(size_t(lim.max_seqs) * sizeof(cuda::GdnSeq), "batch sequences"),
      stage_rows_(size_t(lim.max_batch_tokens) * sizeof(int), "logits rows"),
      stage_pick_(size_t(lim.max_batch_tokens) * kPickBytesPerRow, "token choice") {
  HLWQ_CHECK(lim.kv_dtype == KvDtype::bf16, "the CUDA backend keeps the KV cache in bf16 (kv_dtype f32 is the CPU "
             "reference configuration; use --device cpu for it)");
  HLWQ_CHECK(lim.kv_block_tokens == kCudaKvBlockTokens, "the CUDA attention kernels read KV pages of {} positions, "
             "the model was loaded with {}", kCudaKvBlockTokens, lim.kv_block_tokens);
  HLWQ_CHECK(cfg.norm_topk_prob, "the CUDA router renormalizes the top-k weights; this model has norm_topk_prob "
             "false (use --device cpu)");
  HLWQ_CHECK(H_ <= 4096, "the CUDA norms hold a row of at most 4096 features; hidden_size is {}", H_);
  gd_ = {int(cfg.linear_n_key_heads), int(cfg.linear_n_value_heads), int(cfg.linear_key_head_dim),
         int(cfg.linear_value_head_dim), int(cfg.linear_conv_kernel), eps_};
  ad_ = {int(cfg.n_heads), int(cfg.n_kv_heads), int(cfg.head_dim), int(cfg.rotary_dim()), eps_};
  // asked of the device once, not every batch (attend_plan would ask per decode step)
  attn_block_tokens_ = cuda::attend_prefill_supported(ad_) ? cuda::attend_prefill_block_tokens(ad_) : 0;
  HLWQ_CHECK(opt.expert_slots >= 0 && opt.gpu_memory >= 0, "expert slots {} and GPU memory {} must not be negative",
             opt.expert_slots, opt.gpu_memory);
  HLWQ_CHECK(opt.n_cpu_moe >= 0 && opt.n_cpu_moe <= cfg.n_layers, "--n-cpu-moe {}: the model has {} MoE layers "
             "(K must be in 0..{})", opt.n_cpu_moe, cfg.n_layers, cfg.n_layers);
  const bool cache_asked = opt.expert_slots > 0 || opt.gpu_memory > 0;
  HLWQ_CHECK(opt.cpu_experts == CpuExperts::off || cache_asked, "--cpu-experts {} chooses, per miss of the GPU expert "
             "cache, between PCIe and the CPU: it needs --moe-expert-cache-size N or --gpu-memory SIZE (for a static "
             "split use --n-cpu-moe K)", cpu_experts_name(opt.cpu_experts));
  size_t free0 = 0, total = 0;
  HLWQ_CUDA_CHECK(cudaMemGetInfo(&free0, &total), "device memory");
  HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st_, cudaStreamNonBlocking), "CUDA backend stream");
  HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&staged_, cudaEventDisableTiming), "CUDA backend event");
  HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "CUDA backend side stream");
  HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "CUDA backend event");
  HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming), "CUDA backend event");

  // with every layer's routed experts on the CPU no layer has a cache
  if (cache_asked && opt.n_cpu_moe < cfg.n_layers)
    routed_layout_ = cuda::expert_layout(w.layers[size_t(opt.n_cpu_moe)].moe);
  m_ = cuda::upload_model(cfg, w, routed_layout_ ? &*routed_layout_ : nullptr, opt.n_cpu_moe);
  if (opt.n_cpu_moe > 0 || (routed_layout_ && opt.cpu_experts != CpuExperts::off))
    cpu_ = std::make_unique<cuda::CpuExpertsDev>(w, lim.max_batch_tokens, cfg.n_experts_active, opt.n_cpu_moe);

  const int64_t C = gd_.C(), Hvdv = int64_t(gd_.Hv) * gd_.dv, D = ad_.D, Hq = ad_.Hq, Hkv = ad_.Hkv;
  const int64_t S = lim.max_seqs;
  int64_t proj_w = 0, o_w = 0, in_pad = m_.lm_head.in_pad;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const cuda::LayerDev& L = m_.layers[size_t(l)];
    if (L.attention) {
      kind_index_.push_back(int(kp_.size()));
      const size_t n = size_t(lim.kv_blocks * kCudaKvBlockTokens * Hkv * D);
      kp_.emplace_back(n, "K pages");
      vp_.emplace_back(n, "V pages");
      proj_w = std::max(proj_w, L.attn.qkv.out);
      o_w = std::max(o_w, Hq * D);
      in_pad = std::max({in_pad, L.attn.qkv.in_pad, L.attn.o.in_pad});
    } else {
      kind_index_.push_back(int(conv_.size()));
      conv_.emplace_back(size_t(S * (gd_.K - 1) * C), "GDN conv state");
      S_.emplace_back(size_t(S * gd_.Hv * gd_.dk * gd_.dv), "GDN recurrent state");
      proj_w = std::max(proj_w, L.gdn.qkvz.out);
      o_w = std::max(o_w, Hvdv);
      in_pad = std::max({in_pad, L.gdn.qkvz.in_pad, L.gdn.out.in_pad});
    }
  }
  batch_ = DeviceBuffer<int>(size_t(ints_of_batch(Tm_, lim.kv_blocks)), "batch description");
  seqs_ = DeviceBuffer<cuda::GdnSeq>(size_t(S), "batch sequences");
  rows_ = DeviceBuffer<int>(size_t(Tm_), "logits rows");
  pick_ = DeviceBuffer<uint8_t>(size_t(Tm_) * kPickBytesPerRow, "token choice");
  h_ = DeviceBuffer<float>(size_t(Tm_ * H_), "h");
  xn_ = DeviceBuffer<float>(size_t(Tm_ * H_), "xn");
  y_ = DeviceBuffer<float>(size_t(Tm_ * H_), "y");
  proj_ = DeviceBuffer<float>(size_t(Tm_ * std::max<int64_t>(proj_w, 1)), "projections");
  ba_ = DeviceBuffer<float>(size_t(Tm_ * 2 * gd_.Hv), "GDN b, a");
  gact_ = DeviceBuffer<float>(size_t(Tm_ * C), "GDN conv output");
  o_ = DeviceBuffer<float>(size_t(Tm_ * std::max<int64_t>(o_w, 1)), "mixer output");
  xf_ = DeviceBuffer<uint32_t>(size_t(cuda::xfrag_words(Tm_, in_pad)), "activations in fragment order");
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, opt.device), "SM count");
  attn_ws_ = DeviceBuffer<float>(size_t(cuda::attend_workspace_floats(Tm_, ad_, sms)), "attention split workspace");
  moe_ws_ = cuda::make_moe_workspace(m_.layers[0].moe, Tm_);
  if (gd_.Hv > 0 && Tm_ >= cuda::kGdnChunkedMinTokens && cuda::gdn_chunked_fits(gd_, opt.device))
    gdn_ws_ = DeviceBuffer<float>(size_t(cuda::gdn_chunked_workspace_floats(Tm_, gd_)), "chunked GDN workspace");
  logits_rows_ = std::clamp<int64_t>(kLogitsBudgetBytes / (V_ * 4), 1, Tm_);
  logits_ = DeviceBuffer<float>(size_t(logits_rows_ * V_), "logits");
  lm_x_ = DeviceBuffer<float>(size_t(logits_rows_ * H_), "lm_head input");
  argmax_ws_ = DeviceBuffer<uint64_t>(size_t(cuda::argmax_workspace_words(logits_rows_, V_)), "argmax workspace");
  graphs_.assign(size_t(2 * (S + 1)), nullptr);
  // staging of the whole-layer stream: part of what a budget places before the expert slots
  if (routed_layout_ && opt.moe_stream_min_tokens > 0)
    stream_ = std::make_unique<cuda::MoeLayerStreamer>(*routed_layout_, m_.layers.back().moe.E, moe_ws_.max_tiles,
                                                       opt.moe_stream_min_tokens, stream_slots(m_.layers.back().moe.E));
  for (int32_t s = 0; s < S; ++s) reset_slot(s);
  sync("CUDA backend set-up");
  size_t free1 = 0;
  HLWQ_CUDA_CHECK(cudaMemGetInfo(&free1, &total), "device memory");
  const int64_t used = int64_t(free0) - int64_t(free1);
  const std::string head = fmt::format(
      "({:.2f} GiB of device memory before the routed experts)\n  weights {:.2f} GiB, KV pool {} blocks of {} "
      "positions, {} sequence slots, batches of up to {} tokens", double(used) / double(1 << 30),
      double(m_.bytes) / double(1 << 30), lim.kv_blocks, lim.kv_block_tokens, lim.max_seqs, lim.max_batch_tokens);
  if (opt.n_cpu_moe > 0) {
    int64_t bytes = 0;
    for (int64_t l = 0; l < opt.n_cpu_moe; ++l)
      for (const auto& e : w.layers[size_t(l)].moe.experts) bytes += expert_weight_bytes(e);
    plan_ += fmt::format("\n  --n-cpu-moe {}: the routed experts of MoE layers 0..{} ({:.2f} GiB in the checkpoint, "
                         "host memory) are computed on the CPU, none of them on the GPU", opt.n_cpu_moe,
                         opt.n_cpu_moe - 1, double(bytes) / double(1 << 30));
  }
  if (routed_layout_) plan_expert_cache(used);  // every routed expert on the GPU, or the pinned store and a cache
  plan_ = fmt::format("cuda: {} {}", experts_ ? "routed experts in pinned host memory behind an expert cache"
                                              : "every weight on the GPU", head) + plan_;
  if (!experts_ && opt.n_cpu_moe == 0) cpu_.reset();  // no miss is left for --cpu-experts
  if (experts_ && opt.moe_prefetch != PrefetchMode::off)
    prefetch_ = std::make_unique<cuda::MoePrefetcher>(int(m_.layers.size()), m_.layers.back().moe.router.out);
  if (prefetch_ && opt.moe_prefetch == PrefetchMode::automatic) {
    arbiter_.emplace();
    HLWQ_CUDA_CHECK(cudaEventCreate(&step_t0_), "decode step timing event");
    HLWQ_CUDA_CHECK(cudaEventCreate(&step_t1_), "decode step timing event");
  }
  if (experts_ && opt.cpu_experts != CpuExperts::off) {
    const CpuSplitCosts& c = opt.split_costs;
    if (c.pcie_ns > 0 || c.cpu_ns > 0 || c.cpu_fixed_ns > 0) {
      split_costs_ = c;
      plan_ += fmt::format("\n  cpu experts {}: costs given (PCIe {:.1f} µs, CPU {:.1f} µs an expert + {:.1f} µs a "
                           "layer and step)", cpu_experts_name(opt.cpu_experts), c.pcie_ns / 1e3, c.cpu_ns / 1e3,
                           c.cpu_fixed_ns / 1e3);
    } else {
      measure_split_costs();
    }
    cpu_mode_ = opt.cpu_experts;
    if (opt.cpu_experts == CpuExperts::automatic && !cpu_split_wired(split_costs_)) {
      cpu_mode_ = CpuExperts::off;
      if (opt.n_cpu_moe == 0) cpu_.reset();
      plan_ += "\n  cpu experts auto: off here, as one expert's CPU call with its round trip is not shorter than the "
               "expert over PCIe, and the branch would cost every layer that trip (cpu_split.h)";
    }
  }
  if (opt.gpu_memory > 0) {
    HLWQ_CUDA_CHECK(cudaMemGetInfo(&free1, &total), "device memory");
    HLWQ_CHECK(int64_t(free0) - int64_t(free1) <= opt.gpu_memory, "the plan uses {} bytes of device memory, past the "
               "budget of {}", int64_t(free0) - int64_t(free1), opt.gpu_memory);
  }
}

void CudaBackend::plan_expert_cache(int64_t used) {
  // layers below --n-cpu-moe have no cache: their share of the budget goes to the other layers' slots
  const cuda::ExpertLayout& lay = *routed_layout_;
  const size_t first = size_t(opt_.n_cpu_moe);
  const int64_t B = lay.bytes, NL = int64_t(m_.layers.size()) - opt_.n_cpu_moe, E = m_.layers.back().moe.E;
  int64_t slots = opt_.expert_slots > 0 ? std::min(opt_.expert_slots, E) : E;
  if (opt_.gpu_memory > 0) {
    // slot copies + the per-layer bookkeeping (a few ints per expert and slot) must fit what is left, with room
    // for the allocator's rounding (measured: 10 MB over 40 layers on an H200; 2 MiB per layer + 32 MiB kept free)
    const int64_t slack = NL * (int64_t(2) << 20) + (int64_t(32) << 20);
    const int64_t per_slot = NL * (B + 32), left = opt_.gpu_memory - used - NL * E * 8 - slack;
    const int64_t fit = left > 0 ? left / per_slot : 0;
    HLWQ_CHECK(fit >= 1, "--gpu-memory {:.2f} GiB: the weights other than routed experts, the KV pool and the "
               "workspace take {:.2f} GiB, which leaves no room for one expert slot per layer ({:.1f} MiB each, {} "
               "layers); raise the budget or shrink the context (--ctx / --max-model-len)",
               double(opt_.gpu_memory) / double(1 << 30), double(used) / double(1 << 30), double(B) / double(1 << 20),
               NL);
    slots = std::min(slots, fit);
  }
  if (slots >= E) {
    // a cache of every expert would plan, copy and prefetch each step for nothing: the layers run resident (the
    // same kernels on the same bytes, so the same bits). Decided before any pinned copy exists: each layer is
    // packed into one host buffer and copied to the GPU, so no pinned store of every expert is built and freed.
    std::vector<uint8_t> packed(size_t(E * B));
    Progress progress("pack experts onto the GPU", "layers", NL, NL * E * B);
    for (size_t l = first; l < m_.layers.size(); ++l) {
      cuda::pack_layer_experts(w_.layers[l].moe, lay, E, packed.data(), fmt::format("layer {}", first).c_str());
      cuda::make_routed_resident(m_.layers[l].moe, packed.data(), lay);
      progress.add(1, E * B);
    }
    progress.finish();
    const std::string who = opt_.gpu_memory > 0
                                ? fmt::format("the budget of {:.2f} GiB", double(opt_.gpu_memory) / double(1 << 30))
                                : fmt::format("--moe-expert-cache-size {}", opt_.expert_slots);
    plan_ += fmt::format("\n  {} holds every routed expert: all {} of each of {} layers packed onto the GPU ({:.2f} "
                         "GiB), no expert cache, no prefetch{}, no pinned host copy", who, E, NL,
                         double(E * NL * B) / double(1 << 30),
                         opt_.cpu_experts != CpuExperts::off
                             ? fmt::format(", no miss for --cpu-experts {}", cpu_experts_name(opt_.cpu_experts)) : "");
    stream_.reset();
    routed_layout_.reset();
    return;
  }
  experts_ = std::make_unique<cuda::HostExpertStore>(w_, opt_.n_cpu_moe);
  for (size_t l = first; l < m_.layers.size(); ++l)
    cuda::attach_expert_cache(m_.layers[l].moe, experts_->device_view(l), lay, slots);
  plan_ += fmt::format("\n  expert cache: {} of {} routed experts per layer on the GPU in {} layers ({:.2f} GiB of "
                       "slots); all {} of each of these layers ({:.2f} GiB) in pinned host memory, misses read in "
                       "place over PCIe; prefetch of the next layer's predicted experts {}",
                       slots, E, NL, double(slots * NL * B) / double(1 << 30), E,
                       double(experts_->bytes()) / double(1 << 30),
                       opt_.moe_prefetch == PrefetchMode::automatic
                           ? fmt::format("auto (each decode batch size timed {} steps with it and {} without, the "
                                         "faster kept for {} steps, then timed again)", PrefetchArbiter::kProbe,
                                         PrefetchArbiter::kProbe, PrefetchArbiter::kHold)
                           : prefetch_mode_name(opt_.moe_prefetch));
  if (stream_)
    plan_ += fmt::format("\n  batches of {}+ tokens stream each layer's missing experts once, {} at a time through "
                         "two staging buffers ({:.1f} MiB)", stream_->min_tokens(), stream_->slots_per_buffer(),
                         double(stream_->staging_bytes()) / double(1 << 20));
  if (opt_.gpu_memory > 0)
    plan_ += fmt::format(" (budget {:.2f} GiB)", double(opt_.gpu_memory) / double(1 << 30));
}

void CudaBackend::measure_split_costs() {
  split_costs_ = cpu_->measure_cpu_costs();
  // one expert host → slot, back to back as a step's misses go (the first cached layer's slot 0, still empty)
  const cuda::MoeLayerDev& L = m_.layers[size_t(opt_.n_cpu_moe)].moe;
  const int64_t B = experts_->layout().bytes;
  constexpr int kCopies = 8;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  HLWQ_CUDA_CHECK(cudaEventCreate(&e0), "timing event");
  HLWQ_CUDA_CHECK(cudaEventCreate(&e1), "timing event");
  float ms = 0;
  for (int rep = 0; rep < 2; ++rep) {  // the first round warms up
    HLWQ_CUDA_CHECK(cudaEventRecord(e0, st_), "timing event");
    for (int i = 0; i < kCopies; ++i)
      HLWQ_CUDA_CHECK(cudaMemcpyAsync(L.cache->slots.get(), experts_->device_view(size_t(opt_.n_cpu_moe)) + i % L.E * B,
                                      size_t(B), cudaMemcpyDefault, st_), "timing an expert copy");
    HLWQ_CUDA_CHECK(cudaEventRecord(e1, st_), "timing event");
    HLWQ_CUDA_CHECK(cudaEventSynchronize(e1), "timing an expert copy");
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1), "timing an expert copy");
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  split_costs_.pcie_ns = ms * 1e6f / kCopies;
  plan_ += fmt::format("\n  cpu experts {}: one expert over PCIe {:.1f} µs ({:.1f} GB/s), on the CPU {:.1f} µs + "
                       "{:.1f} µs per layer and step (the CPU call's start and the round trip; measured at load)",
                       cpu_experts_name(opt_.cpu_experts),
                       split_costs_.pcie_ns / 1e3, double(B) / split_costs_.pcie_ns, split_costs_.cpu_ns / 1e3,
                       split_costs_.cpu_fixed_ns / 1e3);
}

bool CudaBackend::expert_cache_stats(ExpertCacheStats& out) const {
  if (!experts_ && !cpu_) return false;
  out = {};
  for (const auto& L : m_.layers) {
    if (!L.moe.cache) continue;  // a layer of --n-cpu-moe
    const cuda::ExpertCacheCounters c = cuda::expert_cache_counters(*L.moe.cache);
    out.hits += int64_t(c.hits);
    out.misses += int64_t(c.loads);
    out.streamed += int64_t(c.streamed);
    out.prefetched += int64_t(c.prefetched);
    out.prefetch_hits += int64_t(c.prefetch_hits);
    out.prefetch_wasted += int64_t(c.prefetch_wasted);
    out.cpu_only += int64_t(c.cpu_only);
    out.copy_ns += int64_t(c.copy_ns);
    out.copy_exposed_ns += int64_t(c.copy_exposed_ns);
  }
  if (stream_) {
    const cuda::LayerStreamCounters& n = stream_->settle();
    out.hits += n.resident;
    out.staged = n.staged;
    out.copy_ns += n.copy_ns;
    out.copy_exposed_ns += n.exposed_ns;
  }
  // every load, in-place read, prefetch and staged copy crosses PCIe once
  if (experts_)
    out.bytes_copied = (out.misses + out.streamed + out.prefetched + out.staged) * experts_->layout().bytes;
  if (cpu_) {
    const cuda::CpuExpertCounters c = cpu_->counters();
    out.cpu_experts = c.experts;
    out.cpu_static = c.static_experts;
    out.cpu_bytes = c.bytes;
    out.cpu_ns = c.ns;
  }
  out.steps = 0;
  out.steps_prefetching = steps_with_;
  out.steps_not_prefetching = steps_without_;
  return true;
}

void CudaBackend::drop_graphs() {
  for (cudaGraphExec_t& g : graphs_)
    if (g) cudaGraphExecDestroy(g), g = nullptr;
}

void CudaBackend::set_route_trace(std::shared_ptr<const RouteTrace> trace) {
  use_device();
  HLWQ_CHECK(!capturing_, "set_route_trace inside a recorded layer schedule");
  sync("routing trace change");  // the staging buffer and the recorded graphs may be in use
  drop_graphs();                 // they were recorded with the previous routing's pointers
  trace_.reset();
  if (!trace) return;
  const RouteTraceParams& p = trace->params;
  HLWQ_CHECK(p.n_layers == int64_t(m_.layers.size()) && p.n_experts == cfg_.n_experts &&
                 p.top_k == cfg_.n_experts_active,
             "routing trace of {} layers, {} experts top-{} for a model of {} MoE layers, {} experts top-{}",
             p.n_layers, p.n_experts, p.top_k, m_.layers.size(), cfg_.n_experts, cfg_.n_experts_active);
  const size_t n = size_t(int64_t(p.n_layers) * Tm_ * p.top_k);
  if (trace_ids_.size() < n) {
    stage_trace_ = std::make_unique<PinnedBuffer>(n * sizeof(int), "routing trace rows");
    trace_ids_ = DeviceBuffer<int>(n, "routing trace rows");
  }
  trace_ = std::make_unique<RouteTraceCursor>(std::move(trace));
}

CudaBackend::~CudaBackend() {
  if (capturing_) abandon_capture();
  drop_graphs();
  cudaEventDestroy(staged_);
  if (step_t0_) cudaEventDestroy(step_t0_);
  if (step_t1_) cudaEventDestroy(step_t1_);
  cudaEventDestroy(fork_);
  cudaEventDestroy(join_);
  cudaStreamDestroy(side_);
  cudaStreamDestroy(st_);
}

float* CudaBackend::act(Act a) const {
  switch (a) {
    case Act::h: return h_.get();
    case Act::xn: return xn_.get();
    case Act::y: return y_.get();
  }
  return nullptr;
}

const float* CudaBackend::norm_weight(int layer, NormKind which) const {
  switch (which) {
    case NormKind::input: return m_.layers[size_t(layer)].input_norm.get();
    case NormKind::post_attention: return m_.layers[size_t(layer)].post_norm.get();
    case NormKind::final_norm: return m_.final_norm.get();
  }
  return nullptr;
}

void CudaBackend::abandon_capture() {
  // a failure between the GDN branch's fork and join leaves side_ in the capture: join it first, or ending the
  // capture fails as unjoined and side_ stays capturing for the next batch
  cudaStreamCaptureStatus side = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(side_, &side) == cudaSuccess && side == cudaStreamCaptureStatusActive &&
      cudaEventRecord(join_, side_) == cudaSuccess)
    cudaStreamWaitEvent(st_, join_, 0);
  cudaGraph_t g = nullptr;
  cudaStreamEndCapture(st_, &g);  // the failed batch's partial recording is dropped
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();
  capturing_ = false;
}

void CudaBackend::begin_batch(const Batch& b) {
  use_device();
  if (capturing_) abandon_capture();  // the previous batch failed between begin_batch and end_layers
  const int64_t T = int64_t(b.tokens.size());
  HLWQ_CHECK(T >= 1 && T <= Tm_ && !b.seqs.empty() && int64_t(b.seqs.size()) <= lim_.max_seqs,
             "CUDA batch of {} tokens in {} sequences (limits {} and {})", T, b.seqs.size(), Tm_, lim_.max_seqs);
  // the previous batch's upload must have left the staging buffers before they are rewritten
  HLWQ_CUDA_CHECK(cudaEventSynchronize(staged_), "batch upload");
  int* ids = stage_.as<int>();
  int* pos = ids + Tm_;
  int* bt_off = pos + Tm_;
  int* bt = bt_off + Tm_;
  auto* seqs = stage_seqs_.as<cuda::GdnSeq>();
  int64_t nbt = 0;
  bool decode = true;
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    const BatchSeq& s = b.seqs[i];
    const int64_t need = (s.pos0 + s.n + kCudaKvBlockTokens - 1) / kCudaKvBlockTokens;
    HLWQ_CHECK(int64_t(s.blocks.size()) >= need && nbt + need <= lim_.kv_blocks,
               "sequence in slot {} reaches position {} with {} KV blocks", s.slot, s.pos0 + s.n, s.blocks.size());
    for (int64_t j = 0; j < need; ++j) bt[nbt + j] = s.blocks[size_t(j)];
    for (int64_t t = 0; t < s.n; ++t) {
      ids[s.t0 + t] = b.tokens[size_t(s.t0 + t)];
      pos[s.t0 + t] = int(s.pos0 + t);
      bt_off[s.t0 + t] = int(nbt);
    }
    seqs[i] = cuda::GdnSeq{int(s.t0), int(s.n), int(s.slot)};
    nbt += need;
    decode = decode && s.n == 1;
  }
  // which attention kernel serves which tokens (attention.cuh), its words right after the block tables
  std::vector<cuda::AttendSeq> aseqs;
  for (const BatchSeq& s : b.seqs) aseqs.push_back({s.t0, s.n, s.pos0});
  const cuda::AttendPlanHost plan = cuda::attend_plan_blocks(aseqs, attn_block_tokens_);
  std::copy(plan.words.begin(), plan.words.end(), bt + nbt);
  attn_plan_ = {plan.words.empty() ? nullptr : batch_.get() + 3 * Tm_ + nbt, plan.n_tiles, plan.n_core};
  // one copy of the used prefix of [ids | pos | bt_off | bt | plan] (ids..bt_off at capacity offsets)
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(batch_.get(), ids, size_t(3 * Tm_ + nbt) * sizeof(int) + plan.words.size() * sizeof(int),
                                  cudaMemcpyHostToDevice, st_),
                  "batch upload");
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(seqs_.get(), seqs, b.seqs.size() * sizeof(cuda::GdnSeq), cudaMemcpyHostToDevice,
                                  st_), "batch sequences upload");
  if (trace_) {  // this batch's rows of the replayed routing trace, beside the batch description
    const int64_t n = int64_t(m_.layers.size()) * T * cfg_.n_experts_active;
    trace_->next(T, std::span<int32_t>(stage_trace_->as<int32_t>(), size_t(n)));
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(trace_ids_.get(), stage_trace_->as<int>(), size_t(n) * sizeof(int),
                                    cudaMemcpyHostToDevice, st_), "routing trace upload");
  }
  HLWQ_CUDA_CHECK(cudaEventRecord(staged_, st_), "batch upload event");
  if (prefetch_) prefetch_->begin_batch();
  if (timed_) {  // the last replayed step's device time (the engine has synchronized since: it read its logits)
    timed_ = false;
    float ms = 0;
    HLWQ_CUDA_CHECK(cudaEventSynchronize(step_t1_), "timing the decode step");
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&ms, step_t0_, step_t1_), "timing the decode step");
    arbiter_->record(timed_T_, timed_with_, double(ms) * 1e3);
  }
  T_ = T;
  n_seq_ = int(b.seqs.size());
  max_n_ = 0;
  for (const BatchSeq& s : b.seqs) max_n_ = std::max(max_n_, int(s.n));
  replayed_ = false;
  const bool record = opt_.graphs && b.recordable && decode && !stats_;  // statistics need every layer's launches
  // with the prefetch or not: --moe-prefetch auto times replayed steps (an untimed one follows the choice in force)
  const bool prefetching = prefetch_ && T <= cuda::kMaxPrefetchTokens;
  prefetch_now_ = prefetching && (!arbiter_ || (record ? arbiter_->choose(T) : arbiter_->held(T)));
  if (prefetching) ++(prefetch_now_ ? steps_with_ : steps_without_);
  if (record && !graph_of_step()) {
    HLWQ_CUDA_CHECK(cudaStreamBeginCapture(st_, cudaStreamCaptureModeThreadLocal), "recording the decode step of {} "
                    "sequences", T);
    capturing_ = true;
  } else if (record) {
    replayed_ = true;
  }
}

bool CudaBackend::replay_layers() {
  if (!replayed_) return false;
  const bool time = arbiter_ && arbiter_->probing(T_);  // a held step only counts (record takes no time for it)
  if (time) HLWQ_CUDA_CHECK(cudaEventRecord(step_t0_, st_), "decode step timing");
  HLWQ_CUDA_CHECK(cudaGraphLaunch(graph_of_step(), st_), "replaying the decode step of {} sequences", T_);
  if (time) {
    HLWQ_CUDA_CHECK(cudaEventRecord(step_t1_, st_), "decode step timing");
    timed_ = true, timed_T_ = T_, timed_with_ = prefetch_now_;
  } else if (arbiter_) {
    arbiter_->record(T_, prefetch_now_, 0.0);
  }
  return true;
}

void CudaBackend::end_layers() {
  if (!capturing_) return;
  cudaGraph_t g = nullptr;
  capturing_ = false;
  HLWQ_CUDA_CHECK(cudaStreamEndCapture(st_, &g), "recording the decode step of {} sequences", T_);
  cudaGraphExec_t ge = nullptr;
  cudaError_t e = cudaSuccess;
  try {
    cuda::make_kernel_edges_programmatic(g, opt_.device, opt_.programmatic_launch);
  } catch (...) {
    cudaGraphDestroy(g);
    throw;
  }
  e = cudaGraphInstantiate(&ge, g, 0);
  cudaGraphDestroy(g);
  HLWQ_CUDA_CHECK(e, "instantiating the decode step of {} sequences", T_);
  graph_of_step() = ge;
  HLWQ_CUDA_CHECK(cudaGraphLaunch(ge, st_), "running the decode step of {} sequences", T_);
}

void CudaBackend::embed(Act out) { cuda::embed(batch_.get(), m_.embed.get(), T_, H_, act(out), st_); }

cuda::NormFusion CudaBackend::norm_frags(int layer, NormKind which) const {
  if (H_ % 32 != 0 || which == NormKind::final_norm) return {};  // the lm_head packs the rows it reads itself
  const cuda::LayerDev& L = m_.layers[size_t(layer)];
  cuda::NormFusion f;
  if (which == NormKind::post_attention) {
    f.xfrag = moe_ws_.x_tok.get();  // the router is bf16, and plain gate_up matrices read these fragments too
    f.in_pad = L.moe.router.in_pad;
  } else if (const cuda::FusedLinearDev& p = L.attention ? L.attn.qkv : L.gdn.qkvz; cuda::reads_plain(p)) {
    f.xfrag = xf_.get();
    f.in_pad = p.in_pad;
  }
  return f;
}

void CudaBackend::release_moe_input(NormKind which) {
  // the post-attention norm writes x_tok (norm_frags), which the last MoE layer's prefetch may still read
  if (which == NormKind::post_attention && prefetch_now_) prefetch_->release_input(st_);
}

void CudaBackend::rmsnorm(int layer, NormKind which, Act in, Act out) {
  release_moe_input(which);
  cuda::rmsnorm_zero_centred(act(in), nullptr, norm_weight(layer, which), T_, H_, eps_, act(out), st_,
                             norm_frags(layer, which));
}

void CudaBackend::add_rmsnorm(Act h, Act y, int layer, NormKind which, Act out) {
  release_moe_input(which);
  cuda::rmsnorm_zero_centred(act(h), act(y), norm_weight(layer, which), T_, H_, eps_, act(out), st_,
                             norm_frags(layer, which));
}

void CudaBackend::gdn_mixer(int layer, Act in, Act out) {
  const cuda::GdnLayerDev& L = m_.layers[size_t(layer)].gdn;
  const int k = kind_index_[size_t(layer)];
  const int64_t C = gd_.C(), ld = L.qkvz.out, Hvdv = int64_t(gd_.Hv) * gd_.dv;
  // one pack of xn serves both input projections (same H columns; a second one when only one of them is HLWQ).
  // Where both read it plain, the small b, a GEMM runs on a branch beside q, k, v, z and the conv (it is needed
  // only by the recurrence), so the step does not wait for its launch.
  const bool branch = cuda::reads_plain(L.qkvz) && cuda::reads_plain(L.ba) && L.qkvz.parts.size() == 1 &&
                      L.ba.parts.size() == 1;
  const bool packed = norm_frags(layer, NormKind::input).xfrag != nullptr;  // by the norm before
  if (branch) {
    if (!packed) cuda::pack_activations(act(in), H_, T_, H_, nullptr, T_, L.qkvz.in_pad, xf_.get(), st_);
    HLWQ_CUDA_CHECK(cudaEventRecord(fork_, st_), "GDN branch fork");
    HLWQ_CUDA_CHECK(cudaStreamWaitEvent(side_, fork_, 0), "GDN branch fork");
    cuda::gemm(L.ba.parts[0].w, xf_.get(), T_, ba_.get(), L.ba.out, side_);
    HLWQ_CUDA_CHECK(cudaEventRecord(join_, side_), "GDN branch join");
    cuda::gemm(L.qkvz.parts[0].w, xf_.get(), T_, proj_.get(), ld, st_);
  } else {
    cuda::fused_forward_rows({{&L.qkvz, proj_.get(), ld}, {&L.ba, ba_.get(), L.ba.out}}, act(in), H_, T_, nullptr, T_,
                             xf_.get(), st_, packed);
  }
  if (stats_) stats_->mixer(layer, false, act(in), H_, T_, st_);
  cuda::gdn_conv(proj_.get(), ld, seqs_.get(), n_seq_, max_n_, L.conv_w.get(), conv_[size_t(k)].get(), gd_,
                 gact_.get(), st_);
  if (branch) HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st_, join_, 0), "GDN branch join");
  // the gated norm at the recurrence's end writes the out-projection's activations too where they are plain
  const bool out_plain = cuda::reads_plain(L.out) && gd_.dv % 32 == 0;
  cuda::gdn_delta_rule(gact_.get(), proj_.get() + C, ld, ba_.get(), L.ba.out, L.A_log.get(), L.dt_bias.get(),
                       L.norm.get(), seqs_.get(), n_seq_, max_n_, S_[size_t(k)].get(), gd_, T_,
                       gdn_ws_.size() == 0 ? nullptr : gdn_ws_.get(), o_.get(), st_, out_plain ? xf_.get() : nullptr,
                       L.out.in_pad);
  if (stats_) stats_->mixer(layer, true, o_.get(), Hvdv, T_, st_);
  cuda::fused_forward(L.out, o_.get(), Hvdv, T_, xf_.get(), act(out), H_, st_, out_plain);
}

void CudaBackend::attn_mixer(int layer, Act in, Act out) {
  const cuda::AttnLayerDev& L = m_.layers[size_t(layer)].attn;
  const int k = kind_index_[size_t(layer)];
  const int64_t ld = L.qkv.out, qw = int64_t(ad_.Hq) * 2 * ad_.D, kvw = int64_t(ad_.Hkv) * ad_.D;
  const int* pos = batch_.get() + Tm_;
  const int* bt_off = pos + Tm_;
  const int* bt = bt_off + Tm_;
  float* qg = proj_.get();
  cuda::fused_forward(L.qkv, act(in), H_, T_, xf_.get(), qg, ld, st_,
                      norm_frags(layer, NormKind::input).xfrag != nullptr);  // packed by the norm before
  if (stats_) stats_->mixer(layer, false, act(in), H_, T_, st_);
  cuda::qk_norm_rope_store(qg, ld, qg + qw, ld, qg + qw + kvw, ld, L.q_norm.get(), L.k_norm.get(), m_.inv_freq.get(),
                           pos, bt_off, bt, kp_[size_t(k)].get(), vp_[size_t(k)].get(), T_, ad_, st_);
  cuda::attend(qg, ld, pos, bt_off, bt, kp_[size_t(k)].get(), vp_[size_t(k)].get(), T_, attn_plan_, ad_, o_.get(),
               attn_ws_.get(), int64_t(attn_ws_.size()), st_);
  if (stats_) stats_->mixer(layer, true, o_.get(), int64_t(ad_.Hq) * ad_.D, T_, st_);
  cuda::fused_forward(L.o, o_.get(), int64_t(ad_.Hq) * ad_.D, T_, xf_.get(), act(out), H_, st_);
}

void CudaBackend::moe_experts(int layer, Act in, Act out) { run_moe(layer, in, out, {}); }

void CudaBackend::moe_experts_add_rmsnorm(int layer, Act in, Act h, Act y, int norm_layer, NormKind which, Act out) {
  if (stats_) return Backend::moe_experts_add_rmsnorm(layer, in, h, y, norm_layer, which, out);  // they read xn after
  // the fused norm runs after this layer's prefetch is issued, so it must not be the one that writes x_tok
  HLWQ_CHECK(which != NormKind::post_attention, "the norm after a MoE block is the next layer's input norm");
  cuda::MoeNorms norms;
  norms.h = act(h);
  norms.w = norm_weight(norm_layer, which);
  norms.eps = eps_;
  norms.y = act(out);
  norms.after = norm_frags(norm_layer, which);
  run_moe(layer, in, y, norms);
}

// The schedule (backend.h) runs the post-attention norm right before a MoE block: where it wrote x_tok, the block's
// pack is skipped.
void CudaBackend::run_moe(int layer, Act in, Act out, cuda::MoeNorms norms) {
  norms.x_packed = norm_frags(layer, NormKind::post_attention).xfrag != nullptr;
  cuda::MoeStepHooks h;
  if (trace_) h.route_ids = trace_ids_.get() + int64_t(layer) * T_ * cfg_.n_experts_active;  // [T, k] of this layer
  h.prefetch = prefetch_now_ ? prefetch_.get() : nullptr;
  h.stream = capturing_ ? nullptr : stream_.get();  // it synchronizes the stream, which a recording cannot
  h.layer = layer;
  if (size_t(layer) + 1 < m_.layers.size()) h.next = &m_.layers[size_t(layer) + 1].moe;
  const cuda::MoeCpuPart cpu{cpu_.get(), layer, layer < opt_.n_cpu_moe, cpu_mode_, split_costs_};
  cuda::moe_forward(m_.layers[size_t(layer)].moe, moe_ws_, act(in), T_, act(out), false, st_, h,
                    cpu_ ? &cpu : nullptr, norms);
  if (stats_) stats_->moe(layer, m_.layers[size_t(layer)].moe, moe_ws_, act(in), T_, st_);
}

int64_t CudaBackend::begin_input_stats(const std::vector<std::string>& keys) {
  use_device();
  // the statistics read every routed expert's rows where the GPU computed them
  HLWQ_CHECK(!cpu_, "calibration statistics on the GPU need every routed expert computed there (no --n-cpu-moe or "
             "--cpu-experts)");
  if (!stats_) stats_ = std::make_unique<cuda::InputStatsDev>(w_, moe_ws_.max_tiles, cfg_.n_experts);
  return stats_->add(keys);
}

LinearStatsMap CudaBackend::take_input_stats() {
  HLWQ_CHECK(stats_ != nullptr, "take_input_stats without begin_input_stats");
  LinearStatsMap out = stats_->take(st_);
  stats_.reset();
  return out;
}

void CudaBackend::lm_head_rows(const float* x, int64_t n_rows, const int* slot_rows, int64_t n) {
  const cuda::FusedLinearDev& w = m_.lm_head;
  cuda::fused_forward_rows({{&w, logits_.get(), V_}}, x, H_, n_rows, slot_rows, n, xf_.get(), st_);
}

void CudaBackend::upload_rows(std::span<const int64_t> rows, size_t r0, int64_t n) {
  int* rr = stage_rows_.as<int>();
  for (int64_t i = 0; i < n; ++i) {
    HLWQ_CHECK(rows[r0 + size_t(i)] >= 0 && rows[r0 + size_t(i)] < T_, "lm_head row {} outside the batch of {}",
               rows[r0 + size_t(i)], T_);
    rr[i] = int(rows[r0 + size_t(i)]);
  }
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(rows_.get(), rr, size_t(n) * sizeof(int), cudaMemcpyHostToDevice, st_),
                  "logits rows upload");
}

void CudaBackend::lm_head(Act in, std::span<const int64_t> rows, float* logits) {
  HLWQ_CHECK(!capturing_, "lm_head inside a recorded layer schedule");
  for (size_t r0 = 0; r0 < rows.size(); r0 += size_t(logits_rows_)) {
    const int64_t n = std::min<int64_t>(logits_rows_, int64_t(rows.size() - r0));
    upload_rows(rows, r0, n);
    lm_head_rows(act(in), T_, rows_.get(), n);
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(logits + int64_t(r0) * V_, logits_.get(), size_t(n * V_) * sizeof(float),
                                    cudaMemcpyDeviceToHost, st_), "logits download ({} rows)", n);
    sync("lm_head");  // also: the rows staging is free again, and any failure of this batch surfaces here
  }
  if (rows.empty()) sync("the batch");
  if (cpu_) cpu_->rethrow_failure();  // a host node's failure (cpu_experts.cuh), also when a graph was replayed
}

bool CudaBackend::lm_head_sample(Act in, std::span<const int64_t> rows, int64_t n_valid,
                                 std::span<const RowSampling> how, int32_t* ids) {
  HLWQ_CHECK(!capturing_, "lm_head inside a recorded layer schedule");
  HLWQ_CHECK(how.size() == rows.size() && n_valid >= 1 && n_valid <= V_,
             "token choice: {} configurations for {} rows, {} valid ids of {}", how.size(), rows.size(), n_valid, V_);
  const size_t Tm = size_t(Tm_);
  auto* cfg = stage_pick_.as<cuda::DeviceSamplerConfig>();
  auto* u = reinterpret_cast<double*>(cfg + Tm);
  int* pick = reinterpret_cast<int*>(u + Tm);
  int* bad = pick + Tm;
  auto* dcfg = reinterpret_cast<cuda::DeviceSamplerConfig*>(pick_.get());
  auto* du = reinterpret_cast<double*>(dcfg + Tm);
  int* dpick = reinterpret_cast<int*>(du + Tm);
  int* dbad = dpick + Tm;
  for (size_t r0 = 0; r0 < rows.size(); r0 += size_t(logits_rows_)) {
    const int64_t n = std::min<int64_t>(logits_rows_, int64_t(rows.size() - r0));
    upload_rows(rows, r0, n);
    bool any_sampled = false;
    for (int64_t i = 0; i < n; ++i) {
      const RowSampling& h = how[r0 + size_t(i)];
      // the device does greedy, and top-k within [1, 1024] (sampling.cuh); other rows are left to the host (−1)
      const bool sampled = h.temperature > 0.f && h.top_k >= 1 && h.top_k <= 1024 && h.top_p > 0.f &&
                           h.top_p <= 1.f && h.min_p >= 0.f && h.min_p <= 1.f;
      cfg[i] = sampled ? cuda::DeviceSamplerConfig{h.temperature, h.top_k, h.top_p, h.min_p}
                       : cuda::DeviceSamplerConfig{};
      u[i] = h.u;
      any_sampled = any_sampled || sampled;
    }
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(dcfg, cfg, Tm * (sizeof(*cfg) + sizeof(*u)), cudaMemcpyHostToDevice, st_),
                    "token choice upload");
    lm_head_rows(act(in), T_, rows_.get(), n);
    // every row: greedy ids and non-finite flags
    cuda::argmax(logits_.get(), n, n_valid, V_, dpick, dbad, argmax_ws_.get(), int64_t(argmax_ws_.size()), st_);
    if (any_sampled) cuda::sample_rows(logits_.get(), n, n_valid, V_, dcfg, du, dpick, st_);
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(pick, dpick, 2 * Tm * sizeof(int), cudaMemcpyDeviceToHost, st_),
                    "chosen ids download ({} rows)", n);
    sync("token choice");
    for (int64_t i = 0; i < n; ++i) {
      HLWQ_CHECK(!bad[i], "sampler: row {} of the batch has a NaN or +inf logit; the model produced non-finite "
                 "logits (numerical overflow or a broken checkpoint), so nothing can be sampled", r0 + size_t(i));
      const RowSampling& h = how[r0 + size_t(i)];
      const bool device_row = h.temperature == 0.f || cfg[i].temperature > 0.f;
      ids[r0 + size_t(i)] = device_row ? pick[i] : -1;  // pick is −1 too when the device gave up (sampling.cuh)
    }
  }
  if (rows.empty()) sync("the batch");
  return true;
}

void CudaBackend::lm_head_host(const float* x, int64_t n, float* logits) {
  use_device();
  for (int64_t r0 = 0; r0 < n; r0 += logits_rows_) {
    const int64_t k = std::min(logits_rows_, n - r0);
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(lm_x_.get(), x + r0 * H_, size_t(k * H_) * sizeof(float), cudaMemcpyHostToDevice,
                                    st_), "lm_head input upload ({} rows)", k);
    lm_head_rows(lm_x_.get(), k, nullptr, k);
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(logits + r0 * V_, logits_.get(), size_t(k * V_) * sizeof(float),
                                    cudaMemcpyDeviceToHost, st_), "logits download ({} rows)", k);
    sync("lm_head");
  }
}

void CudaBackend::read(Act a, float* dst) {
  HLWQ_CHECK(!capturing_, "read() inside a recorded layer schedule (the batch must not be recordable)");
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(dst, act(a), size_t(T_ * H_) * sizeof(float), cudaMemcpyDeviceToHost, st_),
                  "activation download");
  sync("activation download");
}

void CudaBackend::reset_slot(int32_t slot) {
  use_device();
  HLWQ_CHECK(slot >= 0 && slot < lim_.max_seqs, "state slot {} outside [0, {})", slot, lim_.max_seqs);
  const size_t conv = size_t((gd_.K - 1) * gd_.C()), s = size_t(gd_.Hv) * gd_.dk * gd_.dv;
  for (size_t i = 0; i < conv_.size(); ++i) {
    HLWQ_CUDA_CHECK(cudaMemsetAsync(conv_[i].get() + size_t(slot) * conv, 0, conv * sizeof(float), st_), "GDN reset");
    HLWQ_CUDA_CHECK(cudaMemsetAsync(S_[i].get() + size_t(slot) * s, 0, s * sizeof(float), st_), "GDN reset");
  }
}

void CudaBackend::copy_slot_state(int32_t from, int32_t to) {
  use_device();
  HLWQ_CHECK(from >= 0 && from < lim_.max_seqs && to >= 0 && to < lim_.max_seqs && from != to,
             "state copy from slot {} to slot {}: both must be distinct slots in [0, {})", from, to, lim_.max_seqs);
  const size_t conv = size_t((gd_.K - 1) * gd_.C()), s = size_t(gd_.Hv) * gd_.dk * gd_.dv;
  for (size_t i = 0; i < conv_.size(); ++i) {
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(conv_[i].get() + size_t(to) * conv, conv_[i].get() + size_t(from) * conv,
                                    conv * sizeof(float), cudaMemcpyDeviceToDevice, st_),
                    "GDN state copy");
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(S_[i].get() + size_t(to) * s, S_[i].get() + size_t(from) * s, s * sizeof(float),
                                    cudaMemcpyDeviceToDevice, st_),
                    "GDN state copy");
  }
}

}  // namespace

bool cuda_compiled() { return true; }
int cuda_devices() { return cuda::cuda_device_count(); }

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& cfg, const ModelWeights& w, const BackendLimits& lim,
                                           const CudaBackendOptions& opt) {
  HLWQ_CHECK(opt.device >= 0 && opt.device < cuda_devices(), "CUDA device {} does not exist ({} visible)", opt.device,
             cuda_devices());
  return std::make_unique<CudaBackend>(cfg, w, lim, opt);
}

}  // namespace hlwq
