// MoE forward (see moe.h).
#include "model/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/cpu/matmul.h"
#include "model/cpu/norm.h"
#include "core/parallel_errors.h"

namespace hlwq {
namespace {

// y [n, H] = down(silu(gate x) ⊙ up x) for x [n, H].
void expert_mlp(const CpuKernels& k, const ExpertWeights& e, const float* x, int64_t n, float* y) {
  const int64_t I = e.gate_proj.out;
  std::vector<float> g(size_t(n * I)), u(size_t(n * I));  // [n, I]
  linear_forward(k, e.gate_proj, x, n, g.data());
  linear_forward(k, e.up_proj, x, n, u.data());
  for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
  linear_forward(k, e.down_proj, g.data(), n, y);
}

}  // namespace

void moe_forward(const CpuKernels& k, const MoeWeights& w, int64_t n_active, const float* x, int64_t T, float* out) {
  const int64_t H = w.router.in, E = w.router.out;
  std::vector<float> logits(size_t(T * E));  // [T, E]
  linear_forward(k, w.router, x, T, logits.data());

  // route: per expert, the tokens it serves and their weights
  std::vector<std::vector<int64_t>> tok(static_cast<size_t>(E));
  std::vector<std::vector<float>> wt(static_cast<size_t>(E));
  std::vector<int> idx(static_cast<size_t>(E));
  std::vector<float> p(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    float* l = logits.data() + t * E;
    // A NaN router logit (overflowed activations, a corrupt checkpoint) loses every comparison: as -inf it gets
    // weight 0 here instead of poisoning max_element and the softmax of the whole row.
    for (int64_t e = 0; e < E; ++e)
      if (std::isnan(l[e])) l[e] = -INFINITY;
    const float m = *std::max_element(l, l + E);
    float s = 0.f;
    for (int64_t e = 0; e < E; ++e) s += p[size_t(e)] = std::exp(l[e] - m);
    for (auto& v : p) v /= s;
    std::iota(idx.begin(), idx.end(), 0);
    // p can still be NaN (a row of all -inf or +inf logits); partial_sort needs a strict weak order, which NaN
    // breaks (undefined behaviour), so NaN ranks as -inf. Ties resolve to the lower expert index, as torch.topk
    // does on CPU.
    auto key = [&](int e) { return std::isnan(p[size_t(e)]) ? -INFINITY : p[size_t(e)]; };
    std::partial_sort(idx.begin(), idx.begin() + n_active, idx.end(),
                      [&](int a, int b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
    // Always renormalizes the selected weights (norm_topk_prob): the loader refuses configs that say otherwise.
    float sel = 0.f;
    for (int64_t j = 0; j < n_active; ++j) sel += p[size_t(idx[size_t(j)])];
    for (int64_t j = 0; j < n_active; ++j) {
      const int e = idx[size_t(j)];
      tok[size_t(e)].push_back(t);
      wt[size_t(e)].push_back(p[size_t(e)] / sel);
    }
  }

  // shared expert (all tokens) initializes out
  if (w.has_shared) {
    std::vector<float> sg(static_cast<size_t>(T));  // [T, 1]
    expert_mlp(k, w.shared, x, T, out);
    linear_forward(k, w.shared_gate, x, T, sg.data());
    for (int64_t t = 0; t < T; ++t) {
      const float s = sigmoid(sg[size_t(t)]);
      for (int64_t i = 0; i < H; ++i) out[t * H + i] *= s;
    }
  } else {
    std::fill(out, out + T * H, 0.f);
  }

  // Routed experts: one parallel region, one expert per work item (its three matmuls run single-threaded
  // inside it, as nested regions are inactive). Few long regions instead of 3·E short ones: barriers are what
  // hurts when the cores are shared. Busiest experts first for balance. Decode (T = 1) too, once the
  // n_active experts are worth a fork: one region instead of 3·n_active parallel matmuls.
  std::vector<int64_t> off(size_t(E + 1), 0);  // expert e's rows of ye start at off[e]
  for (int64_t e = 0; e < E; ++e) off[size_t(e + 1)] = off[size_t(e)] + int64_t(tok[size_t(e)].size());
  std::vector<float> ye(size_t(off[size_t(E)] * H));  // [T·k, H] expert outputs, grouped by expert
  std::vector<int> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return tok[size_t(a)].size() > tok[size_t(b)].size(); });
  const int64_t I = w.experts.empty() ? 0 : w.experts[0].gate_proj.out;
  const bool par = T * n_active * 3 * I * H >= (int64_t(1) << 20);  // multiply-adds of all routed experts
  ParallelErrors errs;  // a bad_alloc in an expert's buffers must reach the caller, not std::terminate
#pragma omp parallel if (par)
  {
    std::vector<float> xe;
#pragma omp for schedule(dynamic, 1)
    for (int64_t oi = 0; oi < E; ++oi) errs.run([&] {
      const int e = order[size_t(oi)];
      const auto& te = tok[size_t(e)];
      const int64_t n = int64_t(te.size());
      if (n == 0) return;
      xe.resize(size_t(n * H));
      for (int64_t i = 0; i < n; ++i) std::copy(x + te[size_t(i)] * H, x + (te[size_t(i)] + 1) * H, xe.begin() + i * H);
      expert_mlp(k, w.experts[size_t(e)], xe.data(), n, ye.data() + off[size_t(e)] * H);
    });
  }
  errs.rethrow();
  // weighted sum per token, experts in index order: the result does not depend on the thread count
  std::vector<int64_t> cursor(off.begin(), off.end() - 1);
  for (int64_t e = 0; e < E; ++e)
    for (size_t i = 0; i < tok[size_t(e)].size(); ++i) {
      const int64_t t = tok[size_t(e)][i], r = cursor[size_t(e)]++;
      k.axpy(wt[size_t(e)][i], ye.data() + r * H, out + t * H, H);
    }
}

}  // namespace hlwq
