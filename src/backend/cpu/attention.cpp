// Gated attention forward over the paged KV cache (see attention.h).
#include "backend/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/matmul.h"
#include "backend/cpu/norm.h"
#include "core/dtype.h"
#include "core/parallel_errors.h"

namespace hlwq {

AttentionDims AttentionDims::from(const ModelConfig& c) {
  AttentionDims d{c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim(), float(c.rms_norm_eps), {}};
  for (int64_t i = 0; i < d.r / 2; ++i)
    d.inv_freq.push_back(1.f / std::pow(float(c.rope_theta), float(2 * i) / float(d.r)));
  return d;
}

size_t attention_scratch_floats(const AttentionDims& d, int64_t block_tokens) {
  const int64_t R = attention_rows_max(d);
  // K and V of one block widened to fp32, the item's running state acc [R, D] + max [R] + sum [R], scores [bt]
  return size_t(2 * block_tokens * d.D + R * (d.D + 2) + block_tokens) + 6 * 16;
}

namespace {

// Positions of one split must be at least this many: below it the merge costs more than the split saves.
constexpr int64_t kMinSplitPositions = 256;

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

// Element offset of (position p, kv head g) in a sequence's pages.
int64_t kv_offset(std::span<const int32_t> blocks, int64_t bt, int64_t Hkv, int64_t D, int64_t p, int64_t g) {
  return ((int64_t(blocks[size_t(p / bt)]) * bt + p % bt) * Hkv + g) * D;
}

void kv_store(void* base, KvDtype dt, int64_t off, const float* src, int64_t D) {
  if (dt == KvDtype::f32) {
    std::copy(src, src + D, static_cast<float*>(base) + off);
  } else {
    uint16_t* dst = static_cast<uint16_t*>(base) + off;
    for (int64_t i = 0; i < D; ++i) dst[i] = f32_to_bf16(src[i]);
  }
}

void kv_load(const CpuKernels& k, const void* base, KvDtype dt, int64_t off, float* dst, int64_t D) {
  if (dt == KvDtype::f32) {
    const float* s = static_cast<const float*>(base) + off;
    std::copy(s, s + D, dst);
  } else {
    k.bf16_to_f32(static_cast<const uint16_t*>(base) + off, dst, D);
  }
}

// One work item: rows r = (query i0 + r / rep, head g·rep + r % rep) of sequence s against cached positions
// [k_lo, k_hi), as an online softmax: acc [R, D] (unnormalized output), mx [R] running max, sum [R] running
// denominator. Queries only see keys at positions ≤ their own.
struct Item {
  const BatchSeq* s;
  int64_t g, i0, nq, k_lo, k_hi;
};

void attend(const CpuCtx& c, const AttentionDims& d, const KvLayer& kv, const float* qg, const Item& it, float scale,
            float* acc, float* mx, float* sum) {
  const CpuKernels& k = c.k;
  const int64_t D = d.D, rep = d.Hq / d.Hkv, R = it.nq * rep, bt = kv.block_tokens;
  std::fill(acc, acc + R * D, 0.f);
  std::fill(mx, mx + R, -INFINITY);
  std::fill(sum, sum + R, 0.f);
  Scratch& sc = c.scratch.mine();
  ScratchMark mark(sc);
  float* Kf = sc.take(size_t(bt * D));  // [bt, D] this block's keys of head g
  float* Vf = sc.take(size_t(bt * D));  // [bt, D]
  float* p = sc.take(size_t(bt));       // [bt] scores, then weights
  const std::span<const int32_t> blocks = it.s->blocks;
  for (int64_t b0 = it.k_lo; b0 < it.k_hi;) {
    const int64_t b1 = std::min(it.k_hi, (b0 / bt + 1) * bt), nb = b1 - b0;  // positions [b0, b1) of one block
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t off = kv_offset(blocks, bt, d.Hkv, D, b0 + j, it.g);
      kv_load(k, kv.k, kv.dtype, off, Kf + j * D, D);
      kv_load(k, kv.v, kv.dtype, off, Vf + j * D, D);
    }
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = it.i0 + r / rep, h = it.g * rep + r % rep;
      const int64_t n_see = std::min(nb, it.s->pos0 + i + 1 - b0);  // causal: keys at positions ≤ pos0 + i
      if (n_see <= 0) continue;
      const float* q = qg + ((it.s->t0 + i) * d.Hq + h) * 2 * D;
      float bm = -INFINITY;
      for (int64_t j = 0; j < n_see; ++j) bm = std::max(bm, p[j] = k.dot(q, Kf + j * D, D) * scale);
      const float m_new = std::max(mx[r], bm);
      const float corr = std::exp(mx[r] - m_new);  // 0 on the first block (mx = −inf)
      float* a = acc + r * D;
      if (corr != 1.f)
        for (int64_t e = 0; e < D; ++e) a[e] *= corr;
      float s = sum[r] * corr;
      for (int64_t j = 0; j < n_see; ++j) {
        const float w = std::exp(p[j] - m_new);
        s += w;
        k.axpy(w, Vf + j * D, a, D);
      }
      sum[r] = s;
      mx[r] = m_new;
    }
    b0 = b1;
  }
}

// attn rows of item (its rows r) = acc / sum · sigmoid(gate).
void finish_rows(const AttentionDims& d, const float* qg, const Item& it, const float* acc, const float* sum,
                 float* attn) {
  const int64_t D = d.D, rep = d.Hq / d.Hkv;
  for (int64_t r = 0; r < it.nq * rep; ++r) {
    const int64_t t = it.s->t0 + it.i0 + r / rep, h = it.g * rep + r % rep;
    const float* gate = qg + (t * d.Hq + h) * 2 * D + D;
    float* o = attn + (t * d.Hq + h) * D;
    const float inv = 1.f / sum[r];
    for (int64_t e = 0; e < D; ++e) o[e] = acc[r * D + e] * inv * sigmoid(gate[e]);
  }
}

}  // namespace

void attention_forward(const CpuCtx& c, const AttentionWeights& w, const AttentionDims& d, const float* x, int64_t T,
                       std::span<const BatchSeq> seqs, const KvLayer& kv, const AttentionBuffers& buf, float* out) {
  const int64_t Hq = d.Hq, Hkv = d.Hkv, D = d.D, rep = Hq / Hkv, bt = kv.block_tokens, R_max = attention_rows_max(d);
  linear_forward(c, w.q_proj, x, T, buf.qg);
  linear_forward(c, w.k_proj, x, T, buf.kn);
  linear_forward(c, w.v_proj, x, T, buf.vn);
  // per token: norms and RoPE at its own position, then its K/V into its sequence's pages
#pragma omp parallel for schedule(static) if (T * Hq * D >= (int64_t(1) << 18))
  for (int64_t t = 0; t < T; ++t) {
    const BatchSeq& s = seqs[batch_seq_of_row(seqs, t)];
    const int64_t pos = s.pos0 + (t - s.t0);
    for (int64_t h = 0; h < Hq; ++h) {
      float* q = buf.qg + (t * Hq + h) * 2 * D;
      rmsnorm_zero_centred(q, w.q_norm.data(), 1, D, d.eps, q);
      rope_apply(q, pos, d);
    }
    for (int64_t g = 0; g < Hkv; ++g) {
      float* kh = buf.kn + (t * Hkv + g) * D;
      rmsnorm_zero_centred(kh, w.k_norm.data(), 1, D, d.eps, kh);
      rope_apply(kh, pos, d);
      const int64_t off = kv_offset(s.blocks, bt, Hkv, D, pos, g);
      kv_store(kv.k, kv.dtype, off, kh, D);
      kv_store(kv.v, kv.dtype, off, buf.vn + (t * Hkv + g) * D, D);
    }
  }

  // work items: (sequence, KV head, query tile); with fewer tiles than threads, each tile's cached positions are
  // split into n_split ranges whose partial states are merged below
  int64_t n_tiles = 0, kv_max = 0;
  for (const BatchSeq& s : seqs) {
    n_tiles += Hkv * ((s.n + kAttnQueryTile - 1) / kAttnQueryTile);
    kv_max = std::max(kv_max, s.pos0 + s.n);
  }
  const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
  int64_t n_split = 1;
  if (n_tiles < nth)
    n_split = std::clamp<int64_t>(std::min((2 * nth + n_tiles - 1) / n_tiles, kv_max / kMinSplitPositions), 1,
                                  buf.n_parts / n_tiles);
  const int64_t n_items = n_tiles * n_split;
  const float scale = 1.f / std::sqrt(float(D));
  // item index → (sequence, head, tile, split) by walking the sequences: O(n_seqs) per item, negligible next to
  // the item's work, and no per-batch table to allocate
  auto item_at = [&](int64_t idx) {
    const int64_t split = idx % n_split;
    int64_t tile = idx / n_split;
    for (const BatchSeq& s : seqs) {
      const int64_t nt = (s.n + kAttnQueryTile - 1) / kAttnQueryTile;
      if (tile < nt * Hkv) {
        const int64_t g = tile / nt, qt = tile % nt, i0 = qt * kAttnQueryTile;
        const int64_t nq = std::min(kAttnQueryTile, s.n - i0), k_end = s.pos0 + i0 + nq;
        const int64_t per = (k_end + n_split - 1) / n_split;
        return Item{&s, g, i0, nq, std::min(k_end, split * per), std::min(k_end, (split + 1) * per)};
      }
      tile -= nt * Hkv;
    }
    return Item{};  // unreachable: idx < n_items
  };
  ParallelErrors errs;
  // below ~2^18 multiply-adds a fork-join costs more than it saves when the cores are shared (see matmul.cpp)
#pragma omp parallel for schedule(dynamic) if (int64_t(T) * kv_max * Hq * D >= (int64_t(1) << 18))
  for (int64_t idx = 0; idx < n_items; ++idx) errs.run([&] {
    const Item it = item_at(idx);
    if (n_split == 1) {
      Scratch& sc = c.scratch.mine();
      ScratchMark mark(sc);
      float* acc = sc.take(size_t(R_max * D));
      float* mx = sc.take(size_t(R_max));
      float* sum = sc.take(size_t(R_max));
      attend(c, d, kv, buf.qg, it, scale, acc, mx, sum);
      finish_rows(d, buf.qg, it, acc, sum, buf.attn);
    } else {
      float* part = buf.part + idx * R_max * (D + 2);  // acc [R_max, D] | max [R_max] | sum [R_max]
      attend(c, d, kv, buf.qg, it, scale, part, part + R_max * D, part + R_max * (D + 1));
    }
  });
  errs.rethrow();
  if (n_split > 1) {
    // merge the splits of each tile: M = max m_p, sum = Σ sum_p e^{m_p − M}, acc = Σ acc_p e^{m_p − M}
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
      const Item it = item_at(tile * n_split);
      float* first = buf.part + tile * n_split * R_max * (D + 2);
      for (int64_t r = 0; r < it.nq * rep; ++r) {
        float M = -INFINITY;
        for (int64_t p = 0; p < n_split; ++p) M = std::max(M, first[p * R_max * (D + 2) + R_max * D + r]);
        float* acc0 = first + r * D;
        float& sum0 = first[R_max * (D + 1) + r];
        const float c0 = std::exp(first[R_max * D + r] - M);
        sum0 *= c0;
        for (int64_t e = 0; e < D; ++e) acc0[e] *= c0;
        for (int64_t p = 1; p < n_split; ++p) {
          const float* part = first + p * R_max * (D + 2);
          const float mp = part[R_max * D + r];
          if (mp == -INFINITY) continue;  // an empty split (positions beyond this tile's queries)
          const float cp = std::exp(mp - M);
          sum0 += part[R_max * (D + 1) + r] * cp;
          for (int64_t e = 0; e < D; ++e) acc0[e] += part[r * D + e] * cp;
        }
      }
      finish_rows(d, buf.qg, it, first, first + R_max * (D + 1), buf.attn);
    }
  }
  linear_forward(c, w.o_proj, buf.attn, T, out);
}

}  // namespace hlwq
