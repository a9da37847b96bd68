// Gated attention forward (see attention.h).
#include "model/cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/cpu/matmul.h"
#include "model/cpu/norm.h"
#include "core/parallel_errors.h"

namespace hlwq {

AttentionDims AttentionDims::from(const ModelConfig& c) {
  AttentionDims d{c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim(), float(c.rms_norm_eps), {}};
  for (int64_t i = 0; i < d.r / 2; ++i)
    d.inv_freq.push_back(1.f / std::pow(float(c.rope_theta), float(2 * i) / float(d.r)));
  return d;
}

namespace {

// NeoX rotation of the first r dims of x [D]: (x_i, x_{i+r/2}) → (x_i cos − x_{i+r/2} sin, x_{i+r/2} cos + x_i sin)
void rope_apply(float* x, int64_t pos, const AttentionDims& d) {
  const int64_t half = d.r / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float ang = float(pos) * d.inv_freq[size_t(i)];
    const float c = std::cos(ang), s = std::sin(ang);
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c - x2 * s;
    x[i + half] = x2 * c + x1 * s;
  }
}

}  // namespace

void attention_forward(const CpuKernels& k, const AttentionWeights& w, const AttentionDims& d, const float* x,
                       int64_t T, int64_t pos0, KvCache& kv, float* out) {
  const int64_t Hq = d.Hq, Hkv = d.Hkv, D = d.D, rep = Hq / Hkv, row = Hkv * D;
  HLWQ_CHECK(int64_t(kv.k.size()) == pos0 * row, "KV cache holds {} positions, expected {}",
             int64_t(kv.k.size()) / std::max<int64_t>(row, 1), pos0);
  std::vector<float> qg(size_t(T * Hq * 2 * D));  // [T, Hq, 2D] per head [query | gate]
  linear_forward(k, w.q_proj, x, T, qg.data());
  kv.row = row;
  kv.k.resize(size_t((pos0 + T) * row));
  kv.v.resize(size_t((pos0 + T) * row));
  float* kn = kv.k.data() + pos0 * row;  // [T, Hkv, D] new keys
  linear_forward(k, w.k_proj, x, T, kn);
  linear_forward(k, w.v_proj, x, T, kv.v.data() + pos0 * row);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < Hq; ++h) {
      float* q = qg.data() + (t * Hq + h) * 2 * D;
      rmsnorm_zero_centred(q, w.q_norm.data(), 1, D, d.eps, q);
      rope_apply(q, pos0 + t, d);
    }
    for (int64_t h = 0; h < Hkv; ++h) {
      float* kh = kn + t * row + h * D;
      rmsnorm_zero_centred(kh, w.k_norm.data(), 1, D, d.eps, kh);
      rope_apply(kh, pos0 + t, d);
    }
  }
  std::vector<float> attn(size_t(T * Hq * D));  // [T, Hq, D]
  const float scale = 1.f / std::sqrt(float(D));
  // Queries in blocks of Tb rows per head: scores [Tb, P] = Q Kᵀ and out = softmax(scores) V as matmuls.
  // Tb bounds the score block at ~4M floats whatever the context length, and never exceeds T: a decode step
  // (T = 1) needs one score row, not 64.
  const int64_t P = pos0 + T, Tb = std::min(T, std::clamp<int64_t>((int64_t(1) << 22) / P, 1, 64));
  const int64_t nqb = (T + Tb - 1) / Tb;
  ParallelErrors errs;  // a bad_alloc of the score block must reach the caller, not std::terminate
#pragma omp parallel if (T * P * D * Hq >= (int64_t(1) << 18))
  {
    std::vector<float> sc;  // [Tb, P]
    errs.run([&] { sc.resize(size_t(Tb * P)); });
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t qb = 0; qb < nqb; ++qb) errs.run([&] {
        const int64_t t0 = qb * Tb, nt = std::min(Tb, T - t0), np = pos0 + t0 + nt;  // keys [0, np)
        const float* Q = qg.data() + (t0 * Hq + h) * 2 * D;                        // row stride Hq·2D
        const float* Kh = kv.k.data() + (h / rep) * D;                              // [np, D], row stride `row`
        const float* Vh = kv.v.data() + (h / rep) * D;
        float* O = attn.data() + (t0 * Hq + h) * D;                                 // row stride Hq·D
        if (nt < 4) {
          for (int64_t i = 0; i < nt; ++i)
            for (int64_t s = 0; s < np; ++s) sc[size_t(i * np + s)] = k.dot(Q + i * Hq * 2 * D, Kh + s * row, D);
        } else {
          gemm_f32(k, nt, np, D, Q, Hq * 2 * D, Kh, row, true, sc.data(), np);
        }
        for (int64_t i = 0; i < nt; ++i) {
          float* p = sc.data() + i * np;
          const int64_t n = pos0 + t0 + i + 1;  // causal: this query sees keys [0, n)
          float m = -INFINITY;
          for (int64_t s = 0; s < n; ++s) m = std::max(m, p[s] *= scale);
          float sum = 0.f;
          for (int64_t s = 0; s < n; ++s) sum += p[s] = std::exp(p[s] - m);
          const float inv = 1.f / sum;
          for (int64_t s = 0; s < n; ++s) p[s] *= inv;
          std::fill(p + n, p + np, 0.f);
        }
        if (nt < 4) {
          for (int64_t i = 0; i < nt; ++i) {
            std::fill(O + i * Hq * D, O + i * Hq * D + D, 0.f);
            for (int64_t s = 0; s < pos0 + t0 + i + 1; ++s) k.axpy(sc[size_t(i * np + s)], Vh + s * row, O + i * Hq * D, D);
          }
        } else {
          gemm_f32(k, nt, D, np, sc.data(), np, Vh, row, false, O, Hq * D);
        }
        for (int64_t i = 0; i < nt; ++i) {
          const float* gate = Q + i * Hq * 2 * D + D;
          for (int64_t c = 0; c < D; ++c) O[i * Hq * D + c] *= sigmoid(gate[c]);
        }
      });
  }
  errs.rethrow();
  linear_forward(k, w.o_proj, attn.data(), T, out);
}

}  // namespace hlwq
