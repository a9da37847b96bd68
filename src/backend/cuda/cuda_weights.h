// The weights of a Qwen3.5/3.6-MoE model on the device, repacked at load into the layouts the kernels read
// (weight_pack.h), and the upload that makes them. Projections that read the same input are fused into one
// activation pack and adjacent output columns: GDN [in_proj_qkv; in_proj_z] and [in_proj_b; in_proj_a], attention
// [q; k; v]. A checkpoint may keep some of them bf16 and quantize others (CT INT4 keeps in_proj_b/a bf16), so a
// fused projection is a list of parts, each one GEMM of one format; consecutive sources of one format share a part.
// Dimension legend: H hidden, V vocab, C = 2·Hk·dk + Hv·dv, Hv GDN value heads, dv their width, D head_dim.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "backend/cuda/gemm.cuh"
#include "backend/cuda/moe.cuh"
#include "io/hf_config.h"
#include "model/weights.h"

namespace hlwq::cuda {

struct FusedLinearDev {
  struct Part {
    PackedLinear w;
    int64_t col0 = 0;  // first output column of this part
  };
  std::vector<Part> parts;
  int64_t out = 0, in = 0, in_pad = 0;
  int64_t bytes() const;
};
// The concatenation of the sources' rows; every source has the same `in`. A part per run of sources of one
// format (HLWQ: and width).
FusedLinearDev upload_fused(const std::vector<const LinearWeight*>& srcs, const char* what);

// y [T, 0..out) (row stride ldy) = x [T, in] (row stride ldx) · Wᵀ; xfrag: scratch of ≥ xfrag_words(T, in_pad).
// HLWQ parts read the activations rotated (hlwq_gemm.cuh), the others plain: xfrag is packed once per change.
// plain_packed: xfrag already holds x's plain fragments (written by the norm before: norm.cuh).
void fused_forward(const FusedLinearDev& w, const float* x, int64_t ldx, int64_t T, uint32_t* xfrag, float* y,
                   int64_t ldy, cudaStream_t st, bool plain_packed = false);
// Several fused linears of one input (same in), through one xfrag: output slot s of each is row slot_rows[s] (null:
// row s) of x [n_rows, ldx], for s < n.
struct FusedOut {
  const FusedLinearDev* w;
  float* y;
  int64_t ldy;
};
void fused_forward_rows(std::initializer_list<FusedOut> outs, const float* x, int64_t ldx, int64_t n_rows,
                        const int* slot_rows, int64_t n, uint32_t* xfrag, cudaStream_t st, bool plain_packed = false);
// Whether the first part of w reads plain (not rotated) activations: a norm may then write them (plain_packed).
inline bool reads_plain(const FusedLinearDev& w) { return !w.parts.empty() && w.parts[0].w.format != PackedFormat::hlwq; }

struct GdnLayerDev {
  FusedLinearDev qkvz;  // [C + Hv·dv, H]: q | k | v | z
  FusedLinearDev ba;    // [2·Hv, H]: b | a
  FusedLinearDev out;   // [H, Hv·dv]
  DeviceBuffer<float> conv_w, A_log, dt_bias, norm;  // [C, K], [Hv], [Hv], [dv]
};

struct AttnLayerDev {
  FusedLinearDev qkv;  // [Hq·2D + 2·Hkv·D, H]: per head [query | gate], then k, then v
  FusedLinearDev o;    // [H, Hq·D]
  DeviceBuffer<float> q_norm, k_norm;  // [D] zero-centred
};

struct LayerDev {
  bool attention = false;
  DeviceBuffer<float> input_norm, post_norm;  // [H] zero-centred
  GdnLayerDev gdn;
  AttnLayerDev attn;
  MoeLayerDev moe;
};

struct ModelDev {
  DeviceBuffer<uint16_t> embed;  // [V, H] bf16
  DeviceBuffer<float> final_norm;  // [H]
  DeviceBuffer<float> inv_freq;    // [rotary_dim / 2]
  FusedLinearDev lm_head;          // [V, H]
  std::vector<LayerDev> layers;
  int64_t bytes = 0;  // device bytes of all weights
};

// deferred: null uploads every expert; else the routed experts are placed later, packed as *deferred
// (upload_moe_deferred: the backend's plan puts them all on the device or behind a cache), and bytes counts what is
// on the device. The routed experts of the first n_cpu_moe layers are not uploaded at all (the CPU computes them:
// upload_moe_cpu).
ModelDev upload_model(const ModelConfig& cfg, const ModelWeights& w, const ExpertLayout* deferred,
                      int64_t n_cpu_moe = 0);

}  // namespace hlwq::cuda
