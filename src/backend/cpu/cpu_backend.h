// CpuBackend: the Backend (backend.h) on the host CPU — the numerical reference every other backend is tested
// against. Weights are used where they are (views into the mmapped checkpoint); the workspace (activations, per-op
// buffers, per-thread scratch arenas), the paged KV cache and the GDN states are allocated here, once, for the
// limits given, and every forward computes inside them. Ops run fp32 activations with OpenMP over the threads set
// before construction (omp_set_num_threads); kernels are the scalar or AVX2+FMA table picked at run time.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/gdn.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/moe.h"
#include "backend/cpu/scratch.h"
#include "io/hf_config.h"
#include "model/weights.h"
#include "moe/expert_provider.h"

namespace hlwq {

struct CpuBackendOptions {
  CpuIsa isa = CpuIsa::auto_detect;
  GdnMode gdn_mode = GdnMode::auto_select;  // tests force one form of the delta rule
  ExpertProvider* experts = nullptr;        // null: the mapped weights (MappedExpertProvider)
  bool bf16_gemm_inputs = false;            // tests: the CUDA backend's rounding of GEMM inputs (cpu_ctx.h)
};

class CpuBackend final : public Backend {
 public:
  // cfg and w must outlive the backend.
  CpuBackend(const ModelConfig& cfg, const ModelWeights& w, const BackendLimits& lim, const CpuBackendOptions& opt);
  ~CpuBackend() override;

  const char* name() const override { return "cpu"; }
  const CpuKernels& kernels() const { return k_; }
  // Bytes allocated for the KV pages and the GDN states, and for the workspace (activations, buffers, scratch).
  int64_t state_bytes() const { return state_bytes_; }
  int64_t workspace_bytes() const { return workspace_bytes_; }

  void begin_batch(const Batch& b) override;
  void embed(Act out) override;
  void rmsnorm(int layer, NormKind which, Act in, Act out) override;
  void add_rmsnorm(Act h, Act y, int layer, NormKind which, Act out) override;
  void gdn_mixer(int layer, Act in, Act out) override;
  void attn_mixer(int layer, Act in, Act out) override;
  void moe_route(int layer, Act in) override;
  bool moe_wants_hint() const override { return provider_->wants_hints(); }
  void moe_hint(int layer, Act in) override;
  void moe_experts(int layer, Act in, Act out) override;
  void lm_head(Act in, std::span<const int64_t> rows, float* logits) override;
  void lm_head_host(const float* x, int64_t n, float* logits) override;
  void read(Act a, float* dst) override;
  void reset_slot(int32_t slot) override;
  void copy_slot_state(int32_t from, int32_t to) override;
  void set_route_trace(std::shared_ptr<const RouteTrace> trace) override;
  // Calibration: every linear's input goes to `tap` too (an empty function turns it off). Not part of Backend:
  // only the CPU reference offers it.
  void set_linear_input_tap(LinearInputTap tap) { tap_ = std::move(tap); }

 private:
  float* act(Act a);
  const std::vector<float>& norm_weight(int layer, NormKind which) const;
  CpuCtx ctx() { return CpuCtx{k_, scratch_, tap_ ? &tap_ : nullptr, bf16_gemm_inputs_}; }

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  BackendLimits lim_;
  const CpuKernels& k_;
  GdnMode gdn_mode_;
  bool bf16_gemm_inputs_;
  GdnDims gd_;
  AttentionDims ad_;
  MoeDims md_;
  std::unique_ptr<ExpertProvider> own_provider_;
  ExpertProvider* provider_;
  ScratchSet scratch_;
  LinearInputTap tap_;
  int64_t state_bytes_ = 0, workspace_bytes_ = 0;

  // the current batch (copied by begin_batch into buffers of fixed capacity)
  int64_t T_ = 0;
  std::vector<int32_t> tokens_;       // [Tm]
  std::vector<BatchSeq> seqs_;        // capacity max_seqs
  std::vector<int32_t> block_store_;  // [kv_blocks] the batch's block tables, back to back
  std::span<const BatchSeq> batch_seqs_;

  // workspace
  std::vector<float> h_, xn_, y_, lm_rows_;  // [Tm, H] each
  std::vector<float> gdn_ws_, attn_ws_, moe_ws_;
  std::vector<int32_t> moe_ints_;
  std::vector<const ExpertWeights*> moe_where_;
  GdnBuffers gdn_buf_{};
  AttentionBuffers attn_buf_{};
  MoeBuffers moe_buf_{};
  std::unique_ptr<RouteTraceCursor> trace_;  // a replayed routing trace (set_route_trace), or null
  std::vector<int32_t> trace_ids_;            // [n_layers, T, k] the batch's rows of it

  // state: per layer, its index among the GDN or the attention layers
  std::vector<int> kind_index_;
  std::vector<std::vector<float>> gdn_S_, gdn_conv_;            // per GDN layer: [S, Hv, dk, dv], [S, K-1, C]
  std::vector<std::vector<uint16_t>> kv_k16_, kv_v16_;           // per attention layer, bf16 pages [B, bt, Hkv, D]
  std::vector<std::vector<float>> kv_k32_, kv_v32_;              // or fp32 pages
};

}  // namespace hlwq
