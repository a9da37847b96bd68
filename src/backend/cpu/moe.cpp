// MoE route, hint and experts (see moe.h).
#include "backend/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/matmul.h"
#include "backend/cpu/norm.h"
#include "core/parallel_errors.h"

namespace hlwq {
namespace {

constexpr int64_t kRowsPerItem = 32;  // output rows of one (expert, row block) work item

// Top-k of one token's router logits l [E] (softmax in place): ids [k] ascending, weights [k] renormalized
// (weights may be null: a prediction needs only the ids).
void topk_token(float* l, int64_t E, int64_t k, int32_t* order, int32_t* ids, float* weights) {
  // A NaN router logit (overflowed activations, a corrupt checkpoint) loses every comparison: as -inf it gets
  // weight 0 here instead of poisoning max_element and the softmax of the whole row.
  for (int64_t e = 0; e < E; ++e)
    if (std::isnan(l[e])) l[e] = -INFINITY;
  const float m = *std::max_element(l, l + E);
  float s = 0.f;
  for (int64_t e = 0; e < E; ++e) s += l[e] = std::exp(l[e] - m);
  for (int64_t e = 0; e < E; ++e) l[e] /= s;
  std::iota(order, order + E, 0);
  // p can still be NaN (a row of all -inf or +inf logits); partial_sort needs a strict weak order, which NaN
  // breaks (undefined behaviour), so NaN ranks as -inf. Ties resolve to the lower expert index, as torch.topk
  // does on CPU.
  auto key = [&](int32_t e) { return std::isnan(l[e]) ? -INFINITY : l[e]; };
  std::partial_sort(order, order + k, order + E,
                    [&](int32_t a, int32_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
  // Always renormalizes the selected weights (norm_topk_prob): the loader refuses configs that say otherwise.
  std::sort(order, order + k);  // combine in expert-index order: results independent of the ranking's ties
  float sel = 0.f;
  for (int64_t j = 0; j < k; ++j) sel += l[order[j]];
  for (int64_t j = 0; j < k; ++j) {
    ids[j] = order[j];
    if (weights) weights[j] = l[order[j]] / sel;
  }
}

}  // namespace

size_t moe_scratch_floats(int64_t Tm) { return size_t(2 * Tm * kRowsPerItem) + 32; }

void moe_route(const CpuCtx& c, const MoeWeights& w, const MoeDims& d, const float* x, int64_t T, MoeBuffers& buf) {
  linear_forward(c, w.router, x, T, buf.probs);
  for (int64_t t = 0; t < T; ++t)
    topk_token(buf.probs + t * d.E, d.E, d.k, buf.order, buf.ids + t * d.k, buf.weights + t * d.k);
}

void moe_predict(const CpuCtx& c, const LinearWeight& router, const MoeDims& d, const float* x, int64_t T,
                 MoeBuffers& buf) {
  linear_forward(c, router, x, T, buf.probs);
  for (int64_t t = 0; t < T; ++t)
    topk_token(buf.probs + t * d.E, d.E, d.k, buf.order, buf.hint_ids + t * d.k, nullptr);
}

void moe_experts(const CpuCtx& c, const MoeWeights& w, const MoeDims& d, int layer, ExpertProvider& provider,
                 const float* x, int64_t T, MoeBuffers& buf, float* out) {
  const int64_t H = d.H, E = d.E, k = d.k, I = d.I, Is = d.Is, Im = d.Im();
  // group the batch's (token, choice) pairs by expert: counting sort, rows of each expert in token order
  std::fill(buf.offset, buf.offset + E + 1, 0);
  for (int64_t i = 0; i < T * k; ++i) ++buf.offset[buf.ids[i] + 1];
  buf.n_used = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (buf.offset[e + 1] > 0) buf.used[buf.n_used++] = int32_t(e);
    buf.offset[e + 1] += buf.offset[e];
  }
  for (int64_t e = 0; e < E; ++e) buf.order[e] = buf.offset[e];  // next free row of each expert
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = buf.order[buf.ids[t * k + j]]++;
      buf.row_token[row] = int32_t(t);
      buf.token_rows[t * k + j] = row;
    }
  const int64_t n_used = buf.n_used, R = T * k;  // R routed rows; the shared expert's T rows follow them
  provider.acquire(layer, {buf.used, size_t(n_used)}, {buf.where, size_t(n_used)});
  if (Is > 0) {
    linear_forward(c, w.shared_gate, x, T, buf.shared_gate);
    for (int64_t t = 0; t < T; ++t) buf.shared_gate[t] = sigmoid(buf.shared_gate[t]);
  }

  // work items: phase A = (expert, rows of gate/up), phase B = (expert, rows of down); expert index n_used is the
  // shared expert (all T tokens, x itself as input)
  const int64_t n_exp = n_used + (Is > 0 ? 1 : 0);
  const int64_t nbA = (I + kRowsPerItem - 1) / kRowsPerItem, nbAs = (Is + kRowsPerItem - 1) / kRowsPerItem;
  const int64_t nbB = (H + kRowsPerItem - 1) / kRowsPerItem;
  const int64_t itemsA = n_used * nbA + (Is > 0 ? nbAs : 0), itemsB = n_exp * nbB;
  struct Expert {
    const ExpertWeights* e;
    const float* x;  // [n, H] input rows
    int64_t row0, n;  // rows of act / ye
  };
  std::vector<float> x_rounded;  // the shared expert's input under bf16_inputs (the routed rows round as gathered)
  if (c.bf16_inputs && Is > 0) {
    x_rounded.resize(size_t(T * H));
    for (size_t i = 0; i < x_rounded.size(); ++i) x_rounded[i] = linear_input(c, x[i]);
  }
  const float* x_shared = c.bf16_inputs && Is > 0 ? x_rounded.data() : x;
  auto expert_at = [&](int64_t j) {
    if (j == n_used) return Expert{&w.shared, x_shared, R, T};
    const int32_t e = buf.used[j];
    return Expert{buf.where[j], buf.xg + int64_t(buf.offset[e]) * H, buf.offset[e], buf.offset[e + 1] - buf.offset[e]};
  };
  const bool par = T * k * 3 * I * H >= (int64_t(1) << 20);  // multiply-adds of all routed experts
  ParallelErrors errs;  // scratch or kernel errors must reach the caller, not std::terminate
#pragma omp parallel if (par)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const float* src = x + int64_t(buf.row_token[r]) * H;
      for (int64_t i = 0; i < H; ++i) buf.xg[r * H + i] = linear_input(c, src[i]);
    }
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < itemsA; ++it) errs.run([&] {
      const bool shared = it >= n_used * nbA;
      const Expert ex = expert_at(shared ? n_used : it / nbA);
      const int64_t width = shared ? Is : I, r0 = (shared ? it - n_used * nbA : it % nbA) * kRowsPerItem;
      const int64_t nr = std::min(kRowsPerItem, width - r0);
      Scratch& sc = c.scratch.mine();
      ScratchMark mark(sc);
      float* g = sc.take(size_t(ex.n * nr));  // [n, nr]
      float* u = sc.take(size_t(ex.n * nr));
      linear_rows(c, ex.e->gate_proj, r0, nr, ex.x, H, ex.n, g, nr);
      linear_rows(c, ex.e->up_proj, r0, nr, ex.x, H, ex.n, u, nr);
      for (int64_t t = 0; t < ex.n; ++t)
        for (int64_t i = 0; i < nr; ++i)
          buf.act[(ex.row0 + t) * Im + r0 + i] = linear_input(c, silu(g[t * nr + i]) * u[t * nr + i]);
    });
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < itemsB; ++it) errs.run([&] {
      const Expert ex = expert_at(it / nbB);
      const int64_t r0 = (it % nbB) * kRowsPerItem, nr = std::min(kRowsPerItem, H - r0);
      linear_rows(c, ex.e->down_proj, r0, nr, buf.act + ex.row0 * Im, Im, ex.n, buf.ye + ex.row0 * H + r0, H);
    });
    // per token: shared output × its gate, plus the routed outputs weighted, in expert-index order (ids are
    // ascending), so the sum does not depend on the thread count
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      float* o = out + t * H;
      if (Is > 0) {
        const float* ys = buf.ye + (R + t) * H;
        const float s = buf.shared_gate[t];
        for (int64_t i = 0; i < H; ++i) o[i] = ys[i] * s;
      } else {
        std::fill(o, o + H, 0.f);
      }
      for (int64_t j = 0; j < k; ++j) c.k.axpy(buf.weights[t * k + j], buf.ye + int64_t(buf.token_rows[t * k + j]) * H, o, H);
    }
  }
  // A calibration tap sees each expert's inputs: its grouped rows (its tokens only), then their activations; before
  // release, while the provider's weights stay put.
  if (c.tap) errs.run([&] {
    for (int64_t j = 0; j < n_exp; ++j) {
      const Expert ex = expert_at(j);
      (*c.tap)(ex.e->gate_proj, ex.x, H, ex.n);
      (*c.tap)(ex.e->up_proj, ex.x, H, ex.n);
      (*c.tap)(ex.e->down_proj, buf.act + ex.row0 * Im, Im, ex.n);
    }
  });
  provider.release(layer);
  errs.rethrow();
}

}  // namespace hlwq
