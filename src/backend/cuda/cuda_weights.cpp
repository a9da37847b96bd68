// Upload of a model's weights to the device (see cuda_weights.h).
#include "backend/cuda/cuda_weights.h"

#include <cmath>

#include "backend/cuda/expert_store.h"
#include "backend/cuda/hlwq_gemm.cuh"
#include "core/error.h"
#include "core/progress.h"

namespace hlwq::cuda {
namespace {

// Sources that can share one packed part: same format and, for HLWQ, same width (pack_rows checks the codebook).
bool same_part(const LinearWeight& a, const LinearWeight& b) {
  return packed_format_of(a) == packed_format_of(b) &&
         (a.format != LinearFormat::hlwq || a.hlwq.bits == b.hlwq.bits);
}

DeviceBuffer<float> upload_vec(const std::vector<float>& v, const std::string& what) { return DeviceBuffer<float>(v, what); }

int64_t vec_bytes(const DeviceBuffer<float>& b) { return int64_t(b.bytes()); }

}  // namespace

int64_t FusedLinearDev::bytes() const {
  int64_t b = 0;
  for (const Part& p : parts) b += p.w.bytes();
  return b;
}

FusedLinearDev upload_fused(const std::vector<const LinearWeight*>& srcs, const char* what) {
  HLWQ_CHECK(!srcs.empty(), "{}: nothing to upload", what);
  FusedLinearDev f;
  f.in = srcs[0]->in;
  size_t i = 0;
  while (i < srcs.size()) {
    const LinearWeight& first = *srcs[i];
    const PackedFormat pf = packed_format_of(first);
    std::vector<RowRange> rows;
    const int64_t col0 = f.out;
    for (; i < srcs.size() && same_part(*srcs[i], first); ++i) {
      HLWQ_CHECK(srcs[i]->in == f.in, "{}: {} has {} input columns, {} has {}", what, srcs[i]->name, srcs[i]->in,
                 srcs[0]->name, f.in);
      rows.push_back({srcs[i], 0, srcs[i]->out});
      f.out += srcs[i]->out;
    }
    f.parts.push_back({upload_packed(pack_rows(pf, rows, what), what), col0});
    f.in_pad = f.parts.back().w.in_pad;
  }
  return f;
}

void fused_forward_rows(std::initializer_list<FusedOut> outs, const float* x, int64_t ldx, int64_t n_rows,
                        const int* slot_rows, int64_t n, uint32_t* xfrag, cudaStream_t st, bool plain_packed) {
  int packed = plain_packed ? 0 : -1;  // what xfrag holds: 0 plain, 1 rotated (HLWQ), −1 nothing yet
  for (const FusedOut& o : outs) {
    HLWQ_CHECK(o.w->in == outs.begin()->w->in && o.w->in_pad == outs.begin()->w->in_pad,
               "fused_forward: linears of one input with {} and {} columns", o.w->in, outs.begin()->w->in);
    for (const auto& p : o.w->parts) {
      const int rot = p.w.format == PackedFormat::hlwq ? 1 : 0;
      if (rot != packed) {
        (rot ? hlwq_pack_activations : pack_activations)(x, ldx, n_rows, o.w->in, slot_rows, n, o.w->in_pad, xfrag,
                                                          st);
        packed = rot;
      }
      gemm(p.w, xfrag, n, o.y + p.col0, o.ldy, st);
    }
  }
}

void fused_forward(const FusedLinearDev& w, const float* x, int64_t ldx, int64_t T, uint32_t* xfrag, float* y,
                   int64_t ldy, cudaStream_t st, bool plain_packed) {
  fused_forward_rows({{&w, y, ldy}}, x, ldx, T, nullptr, T, xfrag, st, plain_packed);
}

ModelDev upload_model(const ModelConfig& cfg, const ModelWeights& w, const ExpertLayout* deferred,
                      int64_t n_cpu_moe) {
  ModelDev m;
  const int64_t V = cfg.vocab_size, H = cfg.hidden_size;
  HLWQ_CHECK(w.embed.numel() == V * H, "embed_tokens: {} elements, expected {} x {}", w.embed.numel(), V, H);
  {
    // the embedding kernel reads bf16 rows; an F16/F32 table is rounded to bf16 once here (as torch's .to(bfloat16))
    std::vector<uint16_t> e(static_cast<size_t>(V * H));
    if (w.embed.dtype == DType::BF16) {
      std::copy(w.embed.as<uint16_t>(), w.embed.as<uint16_t>() + V * H, e.begin());
    } else {
      const std::vector<float> f = tensor_to_f32(w.embed);
      for (size_t i = 0; i < e.size(); ++i) e[i] = f32_to_bf16(f[i]);
    }
    m.embed = DeviceBuffer<uint16_t>(e, "embed_tokens");
  }
  m.final_norm = upload_vec(w.final_norm, "final norm");
  const int64_t r = cfg.rotary_dim();
  std::vector<float> inv_freq;
  for (int64_t i = 0; i < r / 2; ++i)  // as the CPU backend (attention.cpp): θ^(−2i/r) in fp32
    inv_freq.push_back(1.f / std::pow(float(cfg.rope_theta), float(2 * i) / float(r)));
  m.inv_freq = upload_vec(inv_freq, "rope inv_freq");
  m.lm_head = upload_fused({&w.lm_head}, "lm_head");
  m.bytes = int64_t(m.embed.bytes()) + vec_bytes(m.final_norm) + m.lm_head.bytes();

  Progress progress("upload to the GPU", "layers", cfg.n_layers, 0);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    LayerDev d;
    d.attention = cfg.layer_types[size_t(l)] == LayerKind::full_attention;
    d.input_norm = upload_vec(lw.input_norm, "input_layernorm");
    d.post_norm = upload_vec(lw.post_attention_norm, "post_attention_layernorm");
    int64_t b = vec_bytes(d.input_norm) + vec_bytes(d.post_norm);
    if (d.attention) {
      const AttentionWeights& a = lw.attn;
      d.attn.qkv = upload_fused({&a.q_proj, &a.k_proj, &a.v_proj}, "self_attn q/k/v_proj");
      d.attn.o = upload_fused({&a.o_proj}, "self_attn.o_proj");
      d.attn.q_norm = upload_vec(a.q_norm, "q_norm");
      d.attn.k_norm = upload_vec(a.k_norm, "k_norm");
      b += d.attn.qkv.bytes() + d.attn.o.bytes() + vec_bytes(d.attn.q_norm) + vec_bytes(d.attn.k_norm);
    } else {
      const GdnWeights& g = lw.gdn;
      d.gdn.qkvz = upload_fused({&g.in_proj_qkv, &g.in_proj_z}, "linear_attn in_proj_qkv/z");
      d.gdn.ba = upload_fused({&g.in_proj_b, &g.in_proj_a}, "linear_attn in_proj_b/a");
      d.gdn.out = upload_fused({&g.out_proj}, "linear_attn.out_proj");
      d.gdn.conv_w = upload_vec(g.conv1d, "conv1d");
      d.gdn.A_log = upload_vec(g.A_log, "A_log");
      d.gdn.dt_bias = upload_vec(g.dt_bias, "dt_bias");
      d.gdn.norm = upload_vec(g.norm, "linear_attn norm");
      b += d.gdn.qkvz.bytes() + d.gdn.ba.bytes() + d.gdn.out.bytes() + vec_bytes(d.gdn.conv_w) +
           vec_bytes(d.gdn.A_log) + vec_bytes(d.gdn.dt_bias) + vec_bytes(d.gdn.norm);
    }
    d.moe = int64_t(l) < n_cpu_moe ? upload_moe_cpu(lw.moe, cfg.n_experts_active)
            : deferred ? upload_moe_deferred(lw.moe, cfg.n_experts_active, *deferred)
                    : upload_moe(lw.moe, cfg.n_experts_active);
    b += d.moe.router.bytes();
    for (size_t i = 0; i < d.moe.gate_up.size(); ++i) b += d.moe.gate_up[i].bytes() + d.moe.down[i].bytes();
    m.bytes += b;
    m.layers.push_back(std::move(d));
    progress.add(1, 0);
  }
  progress.finish();
  return m;
}

}  // namespace hlwq::cuda
