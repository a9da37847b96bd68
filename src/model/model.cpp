// Model loading and the Qwen3.5-MoE forward schedule (see model.h):
//   h = embed(tokens); per layer: h += mixer(norm₁ h); h += moe(norm₂ h); logits = lm_head(norm h).
// Dimension legend: n tokens of this call, H hidden, V vocab, L layers.
#include "model/model.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "model/cpu/matmul.h"
#include "model/cpu/moe.h"
#include "model/cpu/norm.h"
#include "model/loader.h"

namespace hlwq {

Model Model::load(const std::string& dir, const LoadOptions& opt) {
  Model m;
  m.cfg_ = load_model_config(dir);  // the arch is checked by load_model_weights
  m.ckpt_ = std::make_unique<Checkpoint>(dir);
  m.w_ = load_model_weights(*m.ckpt_, m.cfg_);
  m.kern_ = &cpu_kernels(opt.isa);
  m.gdn_dims_ = GdnDims::from(m.cfg_);
  m.attn_dims_ = AttentionDims::from(m.cfg_);
  return m;
}

SequenceState Model::new_state(int64_t max_ctx) const {
  HLWQ_CHECK(max_ctx > 0, "max_ctx must be positive, got {}", max_ctx);
  // RoPE past the trained length silently degrades the model: refuse it rather than run it.
  HLWQ_CHECK(cfg_.max_position_embeddings == 0 || max_ctx <= cfg_.max_position_embeddings,
             "context of {} tokens is longer than the model's max_position_embeddings {}", max_ctx,
             cfg_.max_position_embeddings);
  SequenceState st;
  st.max_ctx = max_ctx;
  st.layers.resize(size_t(cfg_.n_layers));
  for (int64_t l = 0; l < cfg_.n_layers; ++l)
    if (cfg_.layer_types[size_t(l)] == LayerKind::linear_attention) st.layers[size_t(l)].gdn = gdn_state_new(gdn_dims_);
  return st;
}

void Model::check_state(const SequenceState& st) const {
  const int64_t L = cfg_.n_layers;
  HLWQ_CHECK(int64_t(st.layers.size()) == L, "sequence state has {} layers, model has {}", st.layers.size(), L);
  HLWQ_CHECK(st.pos >= 0 && st.pos <= st.max_ctx, "sequence state is at position {}, outside [0, max_ctx {}]", st.pos,
             st.max_ctx);
  // A state made by another model would index past its buffers: check every layer's shapes up front.
  const size_t S_len = size_t(gdn_dims_.recurrent_state_floats()), conv_len = size_t(gdn_dims_.conv_state_floats());
  const size_t kv_len = size_t(st.pos * attn_dims_.Hkv * attn_dims_.D);  // [pos, Hkv, D]
  for (int64_t l = 0; l < L; ++l) {
    const LayerState& ls = st.layers[size_t(l)];
    if (cfg_.layer_types[size_t(l)] == LayerKind::linear_attention) {
      HLWQ_CHECK(ls.gdn.S.size() == S_len && ls.gdn.conv.size() == conv_len,
                 "sequence state layer {}: GDN state has {} recurrent and {} conv floats, this model needs {} and {} "
                 "(state from another model?)",
                 l, ls.gdn.S.size(), ls.gdn.conv.size(), S_len, conv_len);
    } else {
      HLWQ_CHECK(ls.kv.k.size() == kv_len && ls.kv.v.size() == kv_len,
                 "sequence state layer {}: KV cache holds {} key and {} value floats, expected {} for {} positions "
                 "(state from another model?)",
                 l, ls.kv.k.size(), ls.kv.v.size(), kv_len, st.pos);
    }
  }
}

void Model::forward(const int32_t* tokens, int64_t n, SequenceState& st, float* logits,
                    const ForwardOptions& opt) const {
  const int64_t V = cfg_.vocab_size;
  HLWQ_CHECK(n > 0, "forward needs at least one token");
  check_state(st);
  HLWQ_CHECK(st.pos + n <= st.max_ctx, "sequence would reach {} tokens, past its max_ctx {}", st.pos + n, st.max_ctx);
  // every id before any pass runs, so a bad id late in a long prompt leaves the state untouched
  for (int64_t t = 0; t < n; ++t)
    HLWQ_CHECK(tokens[t] >= 0 && tokens[t] < V, "token id {} at index {} is outside the vocabulary [0, {})",
               tokens[t], t, V);
  HLWQ_CHECK(opt.max_chunk > 0, "max_chunk must be positive, got {}", opt.max_chunk);
  // all_logits and hidden_hook hand back per-token data of the whole call, so those calls run in one pass.
  if (opt.all_logits || opt.hidden_hook || n <= opt.max_chunk) return forward_pass(tokens, n, st, logits, opt);
  for (int64_t t0 = 0; t0 < n; t0 += opt.max_chunk) {
    const int64_t len = std::min(opt.max_chunk, n - t0);
    forward_pass(tokens + t0, len, st, t0 + len == n ? logits : nullptr, opt);  // only the last token's logits
  }
}

void Model::forward_pass(const int32_t* tokens, int64_t n, SequenceState& st, float* logits,
                         const ForwardOptions& opt) const {
  const int64_t H = cfg_.hidden_size, L = cfg_.n_layers;
  const CpuKernels& k = *kern_;

  std::vector<float> h(size_t(n * H)), xn(size_t(n * H)), y(size_t(n * H));  // [n, H] each
  const size_t es = dtype_size(w_.embed.dtype);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = tokens[t];
    const auto* row = static_cast<const uint8_t*>(w_.embed.data) + size_t(id) * size_t(H) * es;
    if (w_.embed.dtype == DType::BF16) k.bf16_to_f32(reinterpret_cast<const uint16_t*>(row), h.data() + t * H, H);
    else convert_to_f32(w_.embed.dtype, row, h.data() + t * H, size_t(H));
  }
  if (opt.hidden_hook) opt.hidden_hook(0, h.data(), n);

  const float eps = float(cfg_.rms_norm_eps);
  for (int64_t l = 0; l < L; ++l) {
    const LayerWeights& lw = w_.layers[size_t(l)];
    LayerState& ls = st.layers[size_t(l)];
    rmsnorm_zero_centred(h.data(), lw.input_norm.data(), n, H, eps, xn.data());
    if (cfg_.layer_types[size_t(l)] == LayerKind::linear_attention)
      gdn_forward(k, lw.gdn, gdn_dims_, xn.data(), n, ls.gdn, y.data(), opt.gdn_mode);
    else
      attention_forward(k, lw.attn, attn_dims_, xn.data(), n, st.pos, ls.kv, y.data());
    for (size_t i = 0; i < h.size(); ++i) h[i] += y[i];
    rmsnorm_zero_centred(h.data(), lw.post_attention_norm.data(), n, H, eps, xn.data());
    moe_forward(k, lw.moe, cfg_.n_experts_active, xn.data(), n, y.data());
    for (size_t i = 0; i < h.size(); ++i) h[i] += y[i];
    if (opt.hidden_hook) opt.hidden_hook(int(l + 1), h.data(), n);
  }
  st.pos += n;

  rmsnorm_zero_centred(h.data(), w_.final_norm.data(), n, H, eps, xn.data());
  if (opt.hidden_hook) opt.hidden_hook(int(L + 1), xn.data(), n);
  if (!logits) return;
  if (opt.all_logits) linear_forward(k, w_.lm_head, xn.data(), n, logits);
  else linear_forward(k, w_.lm_head, xn.data() + (n - 1) * H, 1, logits);
}

}  // namespace hlwq
