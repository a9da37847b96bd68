// Gated DeltaNet forward (see gdn.h).
//
// Chunked form, for a chunk of L tokens starting from state S0, with G_i = Σ_{j≤i} g_j inside the chunk:
//   the decayed state before token i's update is e^{G_i} S0 + Σ_{j<i} e^{G_i−G_j} k_j u_jᵀ, so the updates
//   u_i = β_i (v_i − (that)ᵀ k_i) solve the unit lower-triangular system
//   u_i + Σ_{j<i} β_i e^{G_i−G_j} (k_i·k_j) u_j = β_i v_i − β_i e^{G_i} S0ᵀ k_i.
//   Forward substitution on [β v | β e^G k] gives U and W with u = U − W S0 (the WY/UT transform), then
//   o_i = e^{G_i} S0ᵀ q_i + Σ_{j≤i} e^{G_i−G_j} (q_i·k_j) u_j and S_L = e^{G_L} S0 + Σ_j e^{G_L−G_j} k_j u_jᵀ.
// Every exponent is G_i − G_j with j ≤ i (or G_i itself), i.e. ≤ 0: nothing can overflow however strong the decay.
#include "model/cpu/gdn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/cpu/matmul.h"
#include "model/cpu/norm.h"
#include "core/parallel_errors.h"

namespace hlwq {

GdnDims GdnDims::from(const ModelConfig& c) {
  return {c.hidden_size,          c.linear_n_key_heads,   c.linear_n_value_heads, c.linear_key_head_dim,
          c.linear_value_head_dim, c.linear_conv_kernel, float(c.rms_norm_eps)};
}

GdnState gdn_state_new(const GdnDims& d) {
  GdnState s;
  s.conv.assign(size_t(d.conv_state_floats()), 0.f);
  s.S.assign(size_t(d.recurrent_state_floats()), 0.f);
  return s;
}

void gdn_core_recurrent(const CpuKernels& kern, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                        const float* v, const float* g, const float* beta, float* S, float* o) {
  std::vector<float> u(static_cast<size_t>(dv));
  for (int64_t t = 0; t < T; ++t) {
    const float* qt = q + t * dk;
    const float* kt = k + t * dk;
    const float decay = std::exp(g[t]);
    // u = β (v − (e^g S)ᵀ k)
    std::fill(u.begin(), u.end(), 0.f);
    for (int64_t a = 0; a < dk; ++a) {
      float* Sa = S + a * dv;
      for (int64_t c = 0; c < dv; ++c) Sa[c] *= decay;
      kern.axpy(kt[a], Sa, u.data(), dv);
    }
    for (int64_t c = 0; c < dv; ++c) u[size_t(c)] = beta[t] * (v[t * dv + c] - u[size_t(c)]);
    float* ot = o + t * dv;
    std::fill(ot, ot + dv, 0.f);
    for (int64_t a = 0; a < dk; ++a) {
      float* Sa = S + a * dv;
      kern.axpy(kt[a], u.data(), Sa, dv);
      kern.axpy(qt[a], Sa, ot, dv);
    }
  }
}

void gdn_core_chunked(const CpuKernels& kern, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                      const float* v, const float* g, const float* beta, float* S, float* o) {
  const int64_t Lmax = kGdnChunk, R = dv + dk;
  std::vector<float> G(static_cast<size_t>(Lmax)), coef(static_cast<size_t>(Lmax));
  std::vector<float> KK(size_t(Lmax * Lmax)), QK(size_t(Lmax * Lmax));  // [L, L]
  std::vector<float> UW(size_t(Lmax * R));                              // [L, dv + dk]: U | W
  std::vector<float> u(size_t(Lmax * dv)), tmp(size_t(std::max(Lmax, dk) * dv));  // [L, dv], [max(L, dk), dv]
  std::vector<float> Qg(size_t(Lmax * dk)), Kt(size_t(dk * Lmax));     // [L, dk], [dk, L]
  for (int64_t t0 = 0; t0 < T; t0 += Lmax) {
    const int64_t L = std::min(Lmax, T - t0);
    const float* qc = q + t0 * dk;
    const float* kc = k + t0 * dk;
    const float* vc = v + t0 * dv;
    float* oc = o + t0 * dv;
    float acc = 0.f;
    for (int64_t i = 0; i < L; ++i) G[size_t(i)] = acc += g[t0 + i];
    // forward substitution on [β v | β e^G k]: row i −= A[i, j] · row j, A[i, j] = β_i e^{G_i−G_j} (k_i·k_j)
    gemm_f32(kern, L, L, dk, kc, dk, kc, dk, true, KK.data(), L);
    for (int64_t i = 0; i < L; ++i) {
      const float b = beta[t0 + i], bg = b * std::exp(G[size_t(i)]);
      float* row = UW.data() + i * R;
      for (int64_t c = 0; c < dv; ++c) row[c] = b * vc[i * dv + c];
      for (int64_t a = 0; a < dk; ++a) row[dv + a] = bg * kc[i * dk + a];
      for (int64_t j = 0; j < i; ++j)
        kern.axpy(-b * std::exp(G[size_t(i)] - G[size_t(j)]) * KK[size_t(i * L + j)], UW.data() + j * R, row, R);
    }
    // u = U − W S0
    gemm_f32(kern, L, dv, dk, UW.data() + dv, R, S, dv, false, tmp.data(), dv);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t c = 0; c < dv; ++c) u[size_t(i * dv + c)] = UW[size_t(i * R + c)] - tmp[size_t(i * dv + c)];
    // o = (e^G ⊙ Q) S0 + (Q Kᵀ ⊙ e^{G_i−G_j}, j ≤ i) u
    for (int64_t i = 0; i < L; ++i) {
      const float eg = std::exp(G[size_t(i)]);
      for (int64_t a = 0; a < dk; ++a) Qg[size_t(i * dk + a)] = eg * qc[i * dk + a];
    }
    gemm_f32(kern, L, dv, dk, Qg.data(), dk, S, dv, false, oc, dv);
    gemm_f32(kern, L, L, dk, qc, dk, kc, dk, true, QK.data(), L);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < L; ++j)
        QK[size_t(i * L + j)] = j <= i ? QK[size_t(i * L + j)] * std::exp(G[size_t(i)] - G[size_t(j)]) : 0.f;
    gemm_f32(kern, L, dv, L, QK.data(), L, u.data(), dv, false, tmp.data(), dv);
    for (int64_t i = 0; i < L * dv; ++i) oc[i] += tmp[size_t(i)];
    // S ← e^{G_L} S0 + (e^{G_L−G_j} k_j)ᵀ u
    const float GL = G[size_t(L - 1)], eL = std::exp(GL);
    for (int64_t j = 0; j < L; ++j) coef[size_t(j)] = std::exp(GL - G[size_t(j)]);
    for (int64_t a = 0; a < dk; ++a)
      for (int64_t j = 0; j < L; ++j) Kt[size_t(a * L + j)] = coef[size_t(j)] * kc[j * dk + a];
    gemm_f32(kern, dk, dv, L, Kt.data(), L, u.data(), dv, false, tmp.data(), dv);
    for (int64_t i = 0; i < dk * dv; ++i) S[i] = eL * S[i] + tmp[size_t(i)];
  }
}

void gdn_forward(const CpuKernels& kern, const GdnWeights& w, const GdnDims& d, const float* x, int64_t T,
                 GdnState& st, float* out, GdnMode mode) {
  const int64_t C = d.C(), K = d.K, Hk = d.Hk, Hv = d.Hv, dk = d.dk, dv = d.dv, rep = Hv / Hk;
  std::vector<float> xe(size_t((K - 1 + T) * C));  // [K-1+T, C]: conv state then this call's projections
  std::vector<float> z(size_t(T * Hv * dv)), b(size_t(T * Hv)), a(size_t(T * Hv));
  std::copy(st.conv.begin(), st.conv.end(), xe.begin());
  linear_forward(kern, w.in_proj_qkv, x, T, xe.data() + (K - 1) * C);
  linear_forward(kern, w.in_proj_z, x, T, z.data());
  linear_forward(kern, w.in_proj_b, x, T, b.data());
  linear_forward(kern, w.in_proj_a, x, T, a.data());
  std::copy(xe.end() - (K - 1) * C, xe.end(), st.conv.begin());

  // causal depthwise conv + SiLU: qkv[t, c] = silu(Σ_j conv1d[c, j] · xe[t + j, c])
  std::vector<float> qkv(size_t(T * C));  // [T, C]
#pragma omp parallel for schedule(static) if (T * C >= 16384)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      float s = 0.f;
      for (int64_t j = 0; j < K; ++j) s += w.conv1d[size_t(c * K + j)] * xe[size_t((t + j) * C + c)];
      qkv[size_t(t * C + c)] = silu(s);
    }

  // per value head: gather q, k, v, g, β into contiguous [T, ·] buffers and run the delta rule
  std::vector<float> o(size_t(T * Hv * dv));  // [T, Hv·dv]
  const bool chunked = mode == GdnMode::chunked || (mode == GdnMode::auto_select && T >= 8);
  const float qscale = 1.f / std::sqrt(float(dk));
  ParallelErrors errs;  // a bad_alloc of the per-head buffers must reach the caller, not std::terminate
#pragma omp parallel for schedule(dynamic) if (T * dk * dv * Hv >= (int64_t(1) << 18))
  for (int64_t h = 0; h < Hv; ++h) errs.run([&] {
    const int64_t kh = h / rep;
    std::vector<float> qh(size_t(T * dk)), khv(size_t(T * dk)), vh(size_t(T * dv)), gh(static_cast<size_t>(T)), bh(static_cast<size_t>(T)),
        oh(size_t(T * dv));
    for (int64_t t = 0; t < T; ++t) {
      const float* row = qkv.data() + t * C;
      const float* qs = row + kh * dk;
      const float* ks = row + Hk * dk + kh * dk;
      float sq = 0.f, sk = 0.f;
      for (int64_t i = 0; i < dk; ++i) sq += qs[i] * qs[i], sk += ks[i] * ks[i];
      const float rq = qscale / std::sqrt(sq + 1e-6f), rk = 1.f / std::sqrt(sk + 1e-6f);
      for (int64_t i = 0; i < dk; ++i) qh[size_t(t * dk + i)] = qs[i] * rq, khv[size_t(t * dk + i)] = ks[i] * rk;
      std::copy(row + 2 * Hk * dk + h * dv, row + 2 * Hk * dk + (h + 1) * dv, vh.begin() + t * dv);
      bh[size_t(t)] = sigmoid(b[size_t(t * Hv + h)]);
      gh[size_t(t)] = -std::exp(w.A_log[size_t(h)]) * softplus(a[size_t(t * Hv + h)] + w.dt_bias[size_t(h)]);
    }
    float* S = st.S.data() + h * dk * dv;
    if (chunked) gdn_core_chunked(kern, T, dk, dv, qh.data(), khv.data(), vh.data(), gh.data(), bh.data(), S, oh.data());
    else gdn_core_recurrent(kern, T, dk, dv, qh.data(), khv.data(), vh.data(), gh.data(), bh.data(), S, oh.data());
    for (int64_t t = 0; t < T; ++t) std::copy(oh.begin() + t * dv, oh.begin() + (t + 1) * dv, o.begin() + (t * Hv + h) * dv);
  });
  errs.rethrow();
  rmsnorm_gated(o.data(), z.data(), w.norm.data(), T * Hv, dv, d.eps);
  linear_forward(kern, w.out_proj, o.data(), T, out);
}

}  // namespace hlwq
