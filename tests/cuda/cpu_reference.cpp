// CPU reference wrappers (see cpu_reference.h): workspace laid out as CpuBackend lays it out.
#include "cpu_reference.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_ctx.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/moe.h"
#include "backend/cpu/scratch.h"
#include "moe/expert_provider.h"

namespace hlwq::test {
namespace {

ScratchSet scratch_for(size_t floats) { return ScratchSet(omp_get_max_threads(), floats); }

// Experts straight from the MoeWeights under test.
class VectorProvider final : public ExpertProvider {
 public:
  explicit VectorProvider(const MoeWeights& w) : w_(w) {}
  void acquire(int, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override {
    for (size_t i = 0; i < ids.size(); ++i) where[i] = &w_.experts[size_t(ids[i])];
  }
  void release(int) override {}

 private:
  const MoeWeights& w_;
};

}  // namespace

void ref_linear(const LinearWeight& w, const float* x, int64_t T, float* y) {
  ScratchSet ss = scratch_for(linear_scratch_floats(w.in));
  linear_forward(CpuCtx{cpu_kernels(), ss}, w, x, T, y);
}

void ref_moe(const MoeWeights& w, int64_t k, const float* x, int64_t T, float* out) {
  const int64_t H = w.router.in, E = w.router.out, I = w.experts[0].gate_proj.out;
  const int64_t Is = w.has_shared ? w.shared.gate_proj.out : 0;
  const MoeDims md{H, E, k, I, Is};
  const int64_t Im = md.Im(), rows = T * k + T;
  ScratchSet ss = scratch_for(moe_scratch_floats(T) + linear_scratch_floats(std::max(H, Im)));
  std::vector<float> f(size_t(T * E + 2 * T * k + T * k * H + rows * Im + rows * H + T));
  std::vector<int32_t> n(size_t(E + T * k + T * k + (E + 1) + T * k + T * k + E));
  std::vector<const ExpertWeights*> where(static_cast<size_t>(E));
  MoeBuffers b{};
  float* m = f.data();
  int32_t* mi = n.data();
  b.probs = m, m += T * E;
  b.weights = m, m += 2 * T * k;
  b.xg = m, m += T * k * H;
  b.act = m, m += rows * Im;
  b.ye = m, m += rows * H;
  b.shared_gate = m;
  b.order = mi, mi += E;
  b.ids = mi, mi += T * k;
  b.hint_ids = mi, mi += T * k;
  b.offset = mi, mi += E + 1;
  b.row_token = mi, mi += T * k;
  b.token_rows = mi, mi += T * k;
  b.used = mi;
  b.where = where.data();
  const CpuCtx c{cpu_kernels(), ss};
  VectorProvider p(w);
  moe_route(c, w, md, x, T, b);
  moe_experts(c, w, md, 0, p, x, T, b, out);
}

void ref_gdn(const GdnWeights& w, const GdnDims& d, const float* x, int64_t T, std::span<const BatchSeq> seqs, float* S,
             float* conv, float* out) {
  const int64_t C = d.C(), Hvdv = d.Hv * d.dv;
  std::vector<float> ws(size_t(T * (2 * C + 2 * Hvdv + 2 * d.Hv)));
  float* g = ws.data();
  const GdnBuffers b{g, g + T * C, g + 2 * T * C, g + 2 * T * C + T * Hvdv, g + 2 * T * C + T * Hvdv + T * d.Hv,
                     g + 2 * T * C + T * Hvdv + 2 * T * d.Hv};
  ScratchSet ss = scratch_for(std::max(gdn_scratch_floats(d, T), linear_scratch_floats(std::max(d.H, Hvdv))));
  gdn_forward(CpuCtx{cpu_kernels(), ss}, w, d, x, T, seqs, GdnLayerState{S, conv}, b, out);
}

void ref_attention(const AttentionWeights& w, const AttentionDims& d, const float* x, int64_t T,
                   std::span<const BatchSeq> seqs, float* k_pages, float* v_pages, int64_t block_tokens, float* out) {
  const int64_t qgn = T * d.Hq * 2 * d.D, kvn = T * d.Hkv * d.D, an = T * d.Hq * d.D;
  const int64_t n_parts = std::max(8, 4 * omp_get_max_threads()), R = attention_rows_max(d);
  std::vector<float> ws(size_t(qgn + 2 * kvn + an + n_parts * R * (d.D + 2)));
  float* a = ws.data();
  const AttentionBuffers b{a, a + qgn, a + qgn + kvn, a + qgn + 2 * kvn, a + qgn + 2 * kvn + an, n_parts};
  ScratchSet ss = scratch_for(
      std::max(attention_scratch_floats(d, block_tokens), linear_scratch_floats(std::max(d.H, d.Hq * d.D))));
  attention_forward(CpuCtx{cpu_kernels(), ss}, w, d, x, T, seqs, KvLayer{k_pages, v_pages, block_tokens, KvDtype::f32},
                    b, out);
}

}  // namespace hlwq::test
