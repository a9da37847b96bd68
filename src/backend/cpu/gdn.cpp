// Gated DeltaNet forward (see gdn.h).
//
// Chunked form, for a chunk of L tokens starting from state S0, with G_i = Σ_{j≤i} g_j inside the chunk:
//   the decayed state before token i's update is e^{G_i} S0 + Σ_{j<i} e^{G_i−G_j} k_j u_jᵀ, so the updates
//   u_i = β_i (v_i − (that)ᵀ k_i) solve the unit lower-triangular system
//   u_i + Σ_{j<i} β_i e^{G_i−G_j} (k_i·k_j) u_j = β_i v_i − β_i e^{G_i} S0ᵀ k_i.
//   Forward substitution on [β v | β e^G k] gives U and W with u = U − W S0 (the WY/UT transform), then
//   o_i = e^{G_i} S0ᵀ q_i + Σ_{j≤i} e^{G_i−G_j} (q_i·k_j) u_j and S_L = e^{G_L} S0 + Σ_j e^{G_L−G_j} k_j u_jᵀ.
// Every exponent is G_i − G_j with j ≤ i (or G_i itself), i.e. ≤ 0: nothing can overflow however strong the decay.
#include "backend/cpu/gdn.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/matmul.h"
#include "backend/cpu/norm.h"
#include "core/parallel_errors.h"

namespace hlwq {

GdnDims GdnDims::from(const ModelConfig& c) {
  return {c.hidden_size,          c.linear_n_key_heads,   c.linear_n_value_heads, c.linear_key_head_dim,
          c.linear_value_head_dim, c.linear_conv_kernel, float(c.rms_norm_eps)};
}

namespace {
constexpr size_t kAlignSlack = 16;  // Scratch::take rounds each start up to 16 floats
}

size_t gdn_scratch_floats(const GdnDims& d, int64_t n_max) {
  const int64_t L = kGdnChunk, dk = d.dk, dv = d.dv;
  const int64_t gather = n_max * (2 * dk + 2 * dv + 2);                           // q, k, v, o, g, β of one head
  const int64_t chunked = 2 * L + 2 * L * L + L * (dv + dk) + L * dv + std::max(L, dk) * dv + 2 * L * dk;
  const int64_t panel = std::max(L, dk) * kPanelRows;                              // gemm_f32's packed panel
  const int64_t recurrent = dv;
  return size_t(gather + std::max(chunked, recurrent) + panel) + 20 * kAlignSlack;
}

void gdn_core_recurrent(const CpuCtx& c, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                        const float* v, const float* g, const float* beta, float* S, float* o) {
  const CpuKernels& kern = c.k;
  Scratch& s = c.scratch.mine();
  ScratchMark mark(s);
  float* u = s.take(size_t(dv));  // [dv]
  for (int64_t t = 0; t < T; ++t) {
    const float* qt = q + t * dk;
    const float* kt = k + t * dk;
    const float decay = std::exp(g[t]);
    // u = β (v − (e^g S)ᵀ k)
    std::fill(u, u + dv, 0.f);
    for (int64_t a = 0; a < dk; ++a) {
      float* Sa = S + a * dv;
      for (int64_t j = 0; j < dv; ++j) Sa[j] *= decay;
      kern.axpy(kt[a], Sa, u, dv);
    }
    for (int64_t j = 0; j < dv; ++j) u[j] = beta[t] * (v[t * dv + j] - u[j]);
    float* ot = o + t * dv;
    std::fill(ot, ot + dv, 0.f);
    for (int64_t a = 0; a < dk; ++a) {
      float* Sa = S + a * dv;
      kern.axpy(kt[a], u, Sa, dv);
      kern.axpy(qt[a], Sa, ot, dv);
    }
  }
}

void gdn_core_chunked(const CpuCtx& c, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                      const float* v, const float* g, const float* beta, float* S, float* o) {
  const CpuKernels& kern = c.k;
  const int64_t Lmax = kGdnChunk, R = dv + dk;
  Scratch& s = c.scratch.mine();
  ScratchMark mark(s);
  float* G = s.take(size_t(Lmax));
  float* coef = s.take(size_t(Lmax));
  float* KK = s.take(size_t(Lmax * Lmax));               // [L, L]
  float* QK = s.take(size_t(Lmax * Lmax));               // [L, L]
  float* UW = s.take(size_t(Lmax * R));                  // [L, dv + dk]: U | W
  float* u = s.take(size_t(Lmax * dv));                  // [L, dv]
  float* tmp = s.take(size_t(std::max(Lmax, dk) * dv));  // [max(L, dk), dv]
  float* Qg = s.take(size_t(Lmax * dk));                 // [L, dk]
  float* Kt = s.take(size_t(dk * Lmax));                 // [dk, L]
  for (int64_t t0 = 0; t0 < T; t0 += Lmax) {
    const int64_t L = std::min(Lmax, T - t0);
    const float* qc = q + t0 * dk;
    const float* kc = k + t0 * dk;
    const float* vc = v + t0 * dv;
    float* oc = o + t0 * dv;
    float acc = 0.f;
    for (int64_t i = 0; i < L; ++i) G[i] = acc += g[t0 + i];
    // forward substitution on [β v | β e^G k]: row i −= A[i, j] · row j, A[i, j] = β_i e^{G_i−G_j} (k_i·k_j)
    gemm_f32(c, L, L, dk, kc, dk, kc, dk, true, KK, L);
    for (int64_t i = 0; i < L; ++i) {
      const float b = beta[t0 + i], bg = b * std::exp(G[i]);
      float* row = UW + i * R;
      for (int64_t j = 0; j < dv; ++j) row[j] = b * vc[i * dv + j];
      for (int64_t a = 0; a < dk; ++a) row[dv + a] = bg * kc[i * dk + a];
      for (int64_t j = 0; j < i; ++j) kern.axpy(-b * std::exp(G[i] - G[j]) * KK[i * L + j], UW + j * R, row, R);
    }
    // u = U − W S0
    gemm_f32(c, L, dv, dk, UW + dv, R, S, dv, false, tmp, dv);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < dv; ++j) u[i * dv + j] = UW[i * R + j] - tmp[i * dv + j];
    // o = (e^G ⊙ Q) S0 + (Q Kᵀ ⊙ e^{G_i−G_j}, j ≤ i) u
    for (int64_t i = 0; i < L; ++i) {
      const float eg = std::exp(G[i]);
      for (int64_t a = 0; a < dk; ++a) Qg[i * dk + a] = eg * qc[i * dk + a];
    }
    gemm_f32(c, L, dv, dk, Qg, dk, S, dv, false, oc, dv);
    gemm_f32(c, L, L, dk, qc, dk, kc, dk, true, QK, L);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < L; ++j) QK[i * L + j] = j <= i ? QK[i * L + j] * std::exp(G[i] - G[j]) : 0.f;
    gemm_f32(c, L, dv, L, QK, L, u, dv, false, tmp, dv);
    for (int64_t i = 0; i < L * dv; ++i) oc[i] += tmp[i];
    // S ← e^{G_L} S0 + (e^{G_L−G_j} k_j)ᵀ u
    const float GL = G[L - 1], eL = std::exp(GL);
    for (int64_t j = 0; j < L; ++j) coef[j] = std::exp(GL - G[j]);
    for (int64_t a = 0; a < dk; ++a)
      for (int64_t j = 0; j < L; ++j) Kt[a * L + j] = coef[j] * kc[j * dk + a];
    gemm_f32(c, dk, dv, L, Kt, L, u, dv, false, tmp, dv);
    for (int64_t i = 0; i < dk * dv; ++i) S[i] = eL * S[i] + tmp[i];
  }
}

void gdn_forward(const CpuCtx& c, const GdnWeights& w, const GdnDims& d, const float* x, int64_t T,
                 std::span<const BatchSeq> seqs, GdnLayerState st, const GdnBuffers& buf, float* out, GdnMode mode) {
  const int64_t C = d.C(), K = d.K, Hk = d.Hk, Hv = d.Hv, dk = d.dk, dv = d.dv, rep = Hv / Hk;
  const int64_t conv_len = d.conv_state_floats(), S_len = d.recurrent_state_floats();
  linear_forward(c, w.in_proj_qkv, x, T, buf.qkv_raw);
  linear_forward(c, w.in_proj_z, x, T, buf.z);
  linear_forward(c, w.in_proj_b, x, T, buf.b);
  linear_forward(c, w.in_proj_a, x, T, buf.a);

  // causal depthwise conv + SiLU per sequence over [its conv state (K-1 rows) | its rows of qkv_raw]:
  // qkv[t, ch] = silu(Σ_j conv1d[ch, j] · ext[i + j, ch]) for the sequence's i-th token
#pragma omp parallel for schedule(static) if (T * C >= 16384)
  for (int64_t t = 0; t < T; ++t) {
    const BatchSeq& s = seqs[batch_seq_of_row(seqs, t)];
    const float* cs = st.conv + int64_t(s.slot) * conv_len;
    const int64_t i = t - s.t0;
    for (int64_t ch = 0; ch < C; ++ch) {
      float acc = 0.f;
      for (int64_t j = 0; j < K; ++j) {
        const int64_t e = i + j;  // row of ext
        const float xv = e < K - 1 ? cs[e * C + ch] : buf.qkv_raw[(s.t0 + e - (K - 1)) * C + ch];
        acc += w.conv1d[size_t(ch * K + j)] * xv;
      }
      buf.qkv[t * C + ch] = silu(acc);
    }
  }
  // new conv state = the last K-1 rows of ext; row r reads ext row n + r ≥ r, so updating in place front to back
  // never overwrites a row still to be read
  for (const BatchSeq& s : seqs) {
    float* cs = st.conv + int64_t(s.slot) * conv_len;
    for (int64_t r = 0; r < K - 1; ++r) {
      const int64_t e = s.n + r;
      const float* src = e < K - 1 ? cs + e * C : buf.qkv_raw + (s.t0 + e - (K - 1)) * C;
      std::copy(src, src + C, cs + r * C);
    }
  }

  // per (sequence, value head): gather q, k, v, g, β into contiguous [n, ·] buffers and run the delta rule
  const float qscale = 1.f / std::sqrt(float(dk));
  const int64_t n_items = int64_t(seqs.size()) * Hv;
  ParallelErrors errs;  // scratch errors must reach the caller, not std::terminate
#pragma omp parallel for schedule(dynamic) if (T * dk * dv * Hv >= (int64_t(1) << 18))
  for (int64_t item = 0; item < n_items; ++item) errs.run([&] {
    const BatchSeq& s = seqs[size_t(item / Hv)];
    const int64_t h = item % Hv, kh = h / rep, n = s.n;
    Scratch& sc = c.scratch.mine();
    ScratchMark mark(sc);
    float* qh = sc.take(size_t(n * dk));
    float* khv = sc.take(size_t(n * dk));
    float* vh = sc.take(size_t(n * dv));
    float* oh = sc.take(size_t(n * dv));
    float* gh = sc.take(size_t(n));
    float* bh = sc.take(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = s.t0 + i;
      const float* row = buf.qkv + t * C;
      const float* qs = row + kh * dk;
      const float* ks = row + Hk * dk + kh * dk;
      float sq = 0.f, sk = 0.f;
      for (int64_t j = 0; j < dk; ++j) sq += qs[j] * qs[j], sk += ks[j] * ks[j];
      const float rq = qscale / std::sqrt(sq + 1e-6f), rk = 1.f / std::sqrt(sk + 1e-6f);
      for (int64_t j = 0; j < dk; ++j) qh[i * dk + j] = qs[j] * rq, khv[i * dk + j] = ks[j] * rk;
      std::copy(row + 2 * Hk * dk + h * dv, row + 2 * Hk * dk + (h + 1) * dv, vh + i * dv);
      bh[i] = sigmoid(buf.b[t * Hv + h]);
      gh[i] = -std::exp(w.A_log[size_t(h)]) * softplus(buf.a[t * Hv + h] + w.dt_bias[size_t(h)]);
    }
    float* S = st.S + int64_t(s.slot) * S_len + h * dk * dv;
    const bool chunked = mode == GdnMode::chunked || (mode == GdnMode::auto_select && n >= 8);
    if (chunked) gdn_core_chunked(c, n, dk, dv, qh, khv, vh, gh, bh, S, oh);
    else gdn_core_recurrent(c, n, dk, dv, qh, khv, vh, gh, bh, S, oh);
    for (int64_t i = 0; i < n; ++i) std::copy(oh + i * dv, oh + (i + 1) * dv, buf.o + ((s.t0 + i) * Hv + h) * dv);
  });
  errs.rethrow();
  rmsnorm_gated(buf.o, buf.z, w.norm.data(), T * Hv, dv, d.eps);
  linear_forward(c, w.out_proj, buf.o, T, out);
}

}  // namespace hlwq
