// CpuBackend (see cpu_backend.h).
#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/mapped_experts.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/norm.h"
#include "core/dtype.h"
#include "core/error.h"

namespace hlwq {

CpuBackend::CpuBackend(const ModelConfig& cfg, const ModelWeights& w, const BackendLimits& lim,
                       const CpuBackendOptions& opt)
    : cfg_(cfg),
      w_(w),
      lim_(lim),
      k_(cpu_kernels(opt.isa)),
      gdn_mode_(opt.gdn_mode),
      bf16_gemm_inputs_(opt.bf16_gemm_inputs),
      gd_(GdnDims::from(cfg)),
      ad_(AttentionDims::from(cfg)),
      md_{cfg.hidden_size, cfg.n_experts, cfg.n_experts_active, cfg.moe_intermediate, cfg.shared_expert_intermediate},
      own_provider_(opt.experts ? nullptr : std::make_unique<MappedExpertProvider>(w)),
      provider_(opt.experts ? opt.experts : own_provider_.get()),
      scratch_(1, 0) {
  const int64_t Tm = lim.max_batch_tokens, H = cfg.hidden_size, S = lim.max_seqs;
  HLWQ_CHECK(Tm >= 1 && S >= 1 && lim.kv_block_tokens >= 1 && lim.kv_blocks >= 0,
             "CPU backend limits out of range: {} batch tokens, {} sequences, {} KV blocks of {} tokens", Tm, S,
             lim.kv_blocks, lim.kv_block_tokens);
  // per-thread scratch: the largest of what any op takes, nested users (MoE items around linear_rows) added
  const int64_t in_max = std::max({H, md_.Im(), gd_.Hv * gd_.dv, ad_.Hq * ad_.D});
  const size_t lin = linear_scratch_floats(in_max);
  const size_t per_thread = std::max({lin, gdn_scratch_floats(gd_, Tm), attention_scratch_floats(ad_, lim.kv_block_tokens),
                                      moe_scratch_floats(Tm) + lin});
  const int nth = omp_get_max_threads();
  scratch_ = ScratchSet(nth, per_thread);

  tokens_.resize(size_t(Tm));
  seqs_.resize(size_t(S));
  block_store_.resize(size_t(std::max<int64_t>(lim.kv_blocks, 1)));
  for (auto* v : {&h_, &xn_, &y_, &lm_rows_}) v->assign(size_t(Tm * H), 0.f);

  // GDN workspace: qkv_raw, qkv [Tm, C], z, o [Tm, Hv·dv], b, a [Tm, Hv]
  const int64_t C = gd_.C(), Hvdv = gd_.Hv * gd_.dv, Hv = gd_.Hv;
  gdn_ws_.assign(size_t(Tm * (2 * C + 2 * Hvdv + 2 * Hv)), 0.f);
  float* g = gdn_ws_.data();
  gdn_buf_ = GdnBuffers{g, g + Tm * C, g + 2 * Tm * C, g + 2 * Tm * C + Tm * Hvdv,
                        g + 2 * Tm * C + Tm * Hvdv + Tm * Hv, g + 2 * Tm * C + Tm * Hvdv + 2 * Tm * Hv};
  // attention workspace: qg [Tm, Hq·2D], kn, vn [Tm, Hkv·D], attn [Tm, Hq·D], partial states
  const int64_t qgn = Tm * ad_.Hq * 2 * ad_.D, kvn = Tm * ad_.Hkv * ad_.D, an = Tm * ad_.Hq * ad_.D;
  const int64_t n_parts = std::max(8, 4 * nth), R_max = attention_rows_max(ad_);
  attn_ws_.assign(size_t(qgn + 2 * kvn + an + n_parts * R_max * (ad_.D + 2)), 0.f);
  float* a = attn_ws_.data();
  attn_buf_ = AttentionBuffers{a, a + qgn, a + qgn + kvn, a + qgn + 2 * kvn, a + qgn + 2 * kvn + an, n_parts};
  // MoE workspace
  const int64_t E = md_.E, k = md_.k, Im = md_.Im(), rows = Tm * k + Tm;
  moe_ws_.assign(size_t(Tm * E + 2 * Tm * k /*weights + spare*/ + Tm * k * H + rows * Im + rows * H + Tm), 0.f);
  moe_ints_.assign(size_t(E + Tm * k + Tm * k + (E + 1) + Tm * k + Tm * k + E), 0);
  moe_where_.assign(size_t(E), nullptr);
  float* m = moe_ws_.data();
  int32_t* mi = moe_ints_.data();
  moe_buf_.probs = m;                          m += Tm * E;
  moe_buf_.weights = m;                        m += 2 * Tm * k;
  moe_buf_.xg = m;                             m += Tm * k * H;
  moe_buf_.act = m;                            m += rows * Im;
  moe_buf_.ye = m;                             m += rows * H;
  moe_buf_.shared_gate = m;
  moe_buf_.order = mi;                         mi += E;
  moe_buf_.ids = mi;                           mi += Tm * k;
  moe_buf_.hint_ids = mi;                      mi += Tm * k;
  moe_buf_.offset = mi;                        mi += E + 1;
  moe_buf_.row_token = mi;                     mi += Tm * k;
  moe_buf_.token_rows = mi;                    mi += Tm * k;
  moe_buf_.used = mi;
  moe_buf_.where = moe_where_.data();
  workspace_bytes_ = int64_t(4 * (tokens_.size() + 4 * h_.size() + gdn_ws_.size() + attn_ws_.size() + moe_ws_.size() +
                                  moe_ints_.size()) + size_t(nth) * per_thread * 4);

  // state: GDN conv and recurrent state per slot, paged KV per attention layer
  const int64_t kv_elems = lim.kv_blocks * lim.kv_block_tokens * ad_.Hkv * ad_.D;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    if (cfg.layer_types[size_t(l)] == LayerKind::linear_attention) {
      kind_index_.push_back(int(gdn_S_.size()));
      gdn_S_.emplace_back(size_t(S * gd_.recurrent_state_floats()), 0.f);
      gdn_conv_.emplace_back(size_t(S * gd_.conv_state_floats()), 0.f);
      state_bytes_ += 4 * S * (gd_.recurrent_state_floats() + gd_.conv_state_floats());
    } else {
      kind_index_.push_back(int(std::max(kv_k16_.size(), kv_k32_.size())));
      if (lim.kv_dtype == KvDtype::bf16) {
        kv_k16_.emplace_back(size_t(kv_elems), uint16_t(0));
        kv_v16_.emplace_back(size_t(kv_elems), uint16_t(0));
        state_bytes_ += 2 * 2 * kv_elems;
      } else {
        kv_k32_.emplace_back(size_t(kv_elems), 0.f);
        kv_v32_.emplace_back(size_t(kv_elems), 0.f);
        state_bytes_ += 2 * 4 * kv_elems;
      }
    }
  }
}

CpuBackend::~CpuBackend() = default;

float* CpuBackend::act(Act a) {
  switch (a) {
    case Act::h: return h_.data();
    case Act::xn: return xn_.data();
    case Act::y: return y_.data();
  }
  return nullptr;
}

const std::vector<float>& CpuBackend::norm_weight(int layer, NormKind which) const {
  if (which == NormKind::final_norm) return w_.final_norm;
  const LayerWeights& lw = w_.layers[size_t(layer)];
  return which == NormKind::input ? lw.input_norm : lw.post_attention_norm;
}

void CpuBackend::begin_batch(const Batch& b) {
  const int64_t T = int64_t(b.tokens.size());
  HLWQ_CHECK(T >= 1 && T <= lim_.max_batch_tokens, "batch of {} tokens is outside [1, {}]", T, lim_.max_batch_tokens);
  HLWQ_CHECK(!b.seqs.empty() && b.seqs.size() <= seqs_.size(), "batch of {} sequences is outside [1, {}]",
             b.seqs.size(), seqs_.size());
  std::copy(b.tokens.begin(), b.tokens.end(), tokens_.begin());
  size_t used = 0;
  int64_t next_row = 0;
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    const BatchSeq& s = b.seqs[i];
    HLWQ_CHECK(s.t0 == next_row && s.n >= 1 && s.slot >= 0 && s.slot < lim_.max_seqs && s.pos0 >= 0,
               "batch sequence {} is malformed (slot {}, rows [{}, {}), position {})", i, s.slot, s.t0, s.t0 + s.n,
               s.pos0);
    HLWQ_CHECK(int64_t(s.blocks.size()) * lim_.kv_block_tokens >= s.pos0 + s.n &&
                   used + s.blocks.size() <= block_store_.size(),
               "batch sequence {}: KV block table of {} blocks cannot hold {} positions", i, s.blocks.size(),
               s.pos0 + s.n);
    for (int32_t blk : s.blocks)
      HLWQ_CHECK(blk >= 0 && blk < lim_.kv_blocks, "KV block {} is outside the pool [0, {})", blk, lim_.kv_blocks);
    std::copy(s.blocks.begin(), s.blocks.end(), block_store_.begin() + int64_t(used));
    seqs_[i] = s;
    seqs_[i].blocks = std::span<const int32_t>(block_store_.data() + used, s.blocks.size());
    used += s.blocks.size();
    next_row += s.n;
  }
  HLWQ_CHECK(next_row == T, "batch sequences cover {} rows, the batch has {} tokens", next_row, T);
  for (int64_t t = 0; t < T; ++t)
    HLWQ_CHECK(tokens_[size_t(t)] >= 0 && tokens_[size_t(t)] < cfg_.vocab_size,
               "token id {} at batch row {} is outside the vocabulary [0, {})", tokens_[size_t(t)], t, cfg_.vocab_size);
  T_ = T;
  batch_seqs_ = std::span<const BatchSeq>(seqs_.data(), b.seqs.size());
  if (trace_) trace_->next(T, trace_ids_);
}

void CpuBackend::set_route_trace(std::shared_ptr<const RouteTrace> trace) {
  trace_.reset();
  if (!trace) return;
  const RouteTraceParams& p = trace->params;
  HLWQ_CHECK(p.n_layers == cfg_.n_layers && p.n_experts == cfg_.n_experts && p.top_k == cfg_.n_experts_active,
             "routing trace of {} layers, {} experts top-{} for a model of {} MoE layers, {} experts top-{}",
             p.n_layers, p.n_experts, p.top_k, cfg_.n_layers, cfg_.n_experts, cfg_.n_experts_active);
  trace_ids_.assign(size_t(int64_t(p.n_layers) * lim_.max_batch_tokens * p.top_k), 0);
  trace_ = std::make_unique<RouteTraceCursor>(std::move(trace));
}

void CpuBackend::embed(Act out) {
  const int64_t H = cfg_.hidden_size;
  float* h = act(out);
  const size_t es = dtype_size(w_.embed.dtype);
  for (int64_t t = 0; t < T_; ++t) {
    const auto* row = static_cast<const uint8_t*>(w_.embed.data) + size_t(tokens_[size_t(t)]) * size_t(H) * es;
    if (w_.embed.dtype == DType::BF16) k_.bf16_to_f32(reinterpret_cast<const uint16_t*>(row), h + t * H, H);
    else convert_to_f32(w_.embed.dtype, row, h + t * H, size_t(H));
  }
}

void CpuBackend::rmsnorm(int layer, NormKind which, Act in, Act out) {
  rmsnorm_zero_centred(act(in), norm_weight(layer, which).data(), T_, cfg_.hidden_size, float(cfg_.rms_norm_eps),
                       act(out));
}

void CpuBackend::add_rmsnorm(Act h, Act y, int layer, NormKind which, Act out) {
  const int64_t H = cfg_.hidden_size;
  float* hp = act(h);
  const float* yp = act(y);
  for (int64_t i = 0; i < T_ * H; ++i) hp[i] += yp[i];
  rmsnorm(layer, which, h, out);
}

void CpuBackend::gdn_mixer(int layer, Act in, Act out) {
  const size_t i = size_t(kind_index_[size_t(layer)]);
  gdn_forward(ctx(), w_.layers[size_t(layer)].gdn, gd_, act(in), T_, batch_seqs_,
              GdnLayerState{gdn_S_[i].data(), gdn_conv_[i].data()}, gdn_buf_, act(out), gdn_mode_);
}

void CpuBackend::attn_mixer(int layer, Act in, Act out) {
  const size_t i = size_t(kind_index_[size_t(layer)]);
  const bool bf16 = lim_.kv_dtype == KvDtype::bf16;
  const KvLayer kv{bf16 ? static_cast<void*>(kv_k16_[i].data()) : kv_k32_[i].data(),
                   bf16 ? static_cast<void*>(kv_v16_[i].data()) : kv_v32_[i].data(), lim_.kv_block_tokens,
                   lim_.kv_dtype};
  attention_forward(ctx(), w_.layers[size_t(layer)].attn, ad_, act(in), T_, batch_seqs_, kv, attn_buf_, act(out));
}

void CpuBackend::moe_route(int layer, Act in) {
  hlwq::moe_route(ctx(), w_.layers[size_t(layer)].moe, md_, act(in), T_, moe_buf_);
  if (!trace_) return;
  // the trace's ids with the router's weights, largest first (set_route_trace in backend.h)
  const int64_t k = md_.k;
  for (int64_t t = 0; t < T_; ++t) {
    float* w = moe_buf_.weights + t * k;
    // NaN (a poisoned row) ranks last, as in the router's own top-k: std::sort needs a strict weak order
    std::sort(w, w + k, [](float a, float b) { return (std::isnan(a) ? -INFINITY : a) > (std::isnan(b) ? -INFINITY : b); });
    std::copy_n(trace_ids_.data() + (int64_t(layer) * T_ + t) * k, k, moe_buf_.ids + t * k);
  }
}

void CpuBackend::moe_hint(int layer, Act in) {
  moe_predict(ctx(), w_.layers[size_t(layer)].moe.router, md_, act(in), T_, moe_buf_);
  provider_->hint(layer, std::span<const int32_t>(moe_buf_.hint_ids, size_t(T_ * md_.k)));
}

void CpuBackend::moe_experts(int layer, Act in, Act out) {
  hlwq::moe_experts(ctx(), w_.layers[size_t(layer)].moe, md_, layer, *provider_, act(in), T_, moe_buf_, act(out));
}

void CpuBackend::lm_head(Act in, std::span<const int64_t> rows, float* logits) {
  const int64_t H = cfg_.hidden_size, n = int64_t(rows.size());
  if (n == 0) return;
  const float* x = act(in);
  bool contiguous = true;
  for (int64_t i = 0; i < n; ++i) contiguous = contiguous && rows[size_t(i)] == rows[0] + i;
  if (!contiguous) {
    for (int64_t i = 0; i < n; ++i)
      std::copy(x + rows[size_t(i)] * H, x + (rows[size_t(i)] + 1) * H, lm_rows_.data() + i * H);
    x = lm_rows_.data();
  } else {
    x += rows[0] * H;
  }
  linear_forward(ctx(), w_.lm_head, x, n, logits);
}

void CpuBackend::lm_head_host(const float* x, int64_t n, float* logits) { linear_forward(ctx(), w_.lm_head, x, n, logits); }

void CpuBackend::read(Act a, float* dst) {
  const float* src = act(a);
  std::copy(src, src + T_ * cfg_.hidden_size, dst);
}

void CpuBackend::reset_slot(int32_t slot) {
  HLWQ_CHECK(slot >= 0 && slot < lim_.max_seqs, "slot {} is outside [0, {})", slot, lim_.max_seqs);
  const int64_t S_len = gd_.recurrent_state_floats(), conv_len = gd_.conv_state_floats();
  for (size_t i = 0; i < gdn_S_.size(); ++i) {
    std::fill_n(gdn_S_[i].begin() + slot * S_len, S_len, 0.f);
    std::fill_n(gdn_conv_[i].begin() + slot * conv_len, conv_len, 0.f);
  }
}

void CpuBackend::copy_slot_state(int32_t from, int32_t to) {
  HLWQ_CHECK(from >= 0 && from < lim_.max_seqs && to >= 0 && to < lim_.max_seqs && from != to,
             "state copy from slot {} to slot {}: both must be distinct slots in [0, {})", from, to, lim_.max_seqs);
  const int64_t S_len = gd_.recurrent_state_floats(), conv_len = gd_.conv_state_floats();
  for (size_t i = 0; i < gdn_S_.size(); ++i) {
    std::copy_n(gdn_S_[i].begin() + from * S_len, S_len, gdn_S_[i].begin() + to * S_len);
    std::copy_n(gdn_conv_[i].begin() + from * conv_len, conv_len, gdn_conv_[i].begin() + to * conv_len);
  }
}

}  // namespace hlwq
