// CpuExpertJobs (see expert_jobs.h).
#include "backend/cpu/expert_jobs.h"

#include <omp.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/matmul.h"
#include "backend/cpu/norm.h"
#include "core/error.h"
#include "core/parallel_errors.h"

namespace hlwq {
namespace {

constexpr int64_t kRowsPerItem = 32;  // output rows of one (expert, row block) work item

int64_t view_bytes(const TensorView& v) { return v.data ? int64_t(v.nbytes()) : 0; }
int64_t linear_bytes(const LinearWeight& l) { return view_bytes(l.weight) + view_bytes(l.packed) + view_bytes(l.scale); }

}  // namespace

int64_t expert_weight_bytes(const ExpertWeights& e) {
  return linear_bytes(e.gate_proj) + linear_bytes(e.up_proj) + linear_bytes(e.down_proj);
}

int cpu_expert_threads_beside_gpu() { return std::max(1, omp_get_max_threads() - 1); }

CpuExpertJobs::CpuExpertJobs(int64_t H, int64_t I, int64_t Jm, CpuIsa isa, int n_threads, bool bf16_inputs)
    : H_(H), I_(I), Jm_(Jm), n_threads_(n_threads > 0 ? n_threads : omp_get_max_threads()), bf16_inputs_(bf16_inputs),
      k_(cpu_kernels(isa)),
      scratch_(n_threads_, linear_scratch_floats(std::max(H, I)) + size_t(2 * Jm * kRowsPerItem) + 32),
      order_(size_t(Jm)), xg_(size_t(Jm * H)), act_(size_t(Jm * I)) {
  HLWQ_CHECK(H >= 1 && I >= 1 && Jm >= 1, "CPU experts: H {}, I {}, {} jobs", H, I, Jm);
  groups_.reserve(size_t(Jm));
}

CpuExpertWork CpuExpertJobs::run(const MoeWeights& w, const CpuExpertJob* jobs, int64_t J, const float* xn,
                                 int64_t T, float* out) {
  const int64_t H = H_, I = I_, E = int64_t(w.experts.size());
  HLWQ_CHECK(J <= Jm_, "CPU experts: {} jobs, room for {}", J, Jm_);
  CpuExpertWork work;
  if (J == 0) return work;
  for (int64_t i = 0; i < J; ++i) {
    const CpuExpertJob& j = jobs[i];
    HLWQ_CHECK(j.expert >= 0 && j.expert < E && j.token >= 0 && j.token < T, "CPU experts ({}): job of expert {} "
               "on token {} outside {} experts and {} tokens", w.router.name, j.expert, j.token, E, T);
  }
  HLWQ_CHECK(w.experts[0].gate_proj.out == I && w.experts[0].gate_proj.in == H, "CPU experts ({}): experts are "
             "[{}, {}], sized for [{}, {}]", w.router.name, w.experts[0].gate_proj.out, w.experts[0].gate_proj.in, I, H);
  // group by expert, rows by slot (then position): the same grouping whatever order the jobs arrive in
  int32_t* ord = order_.data();
  std::iota(ord, ord + J, 0);
  std::sort(ord, ord + J, [&](int32_t a, int32_t b) {
    const CpuExpertJob &x = jobs[a], &y = jobs[b];
    return x.expert != y.expert ? x.expert < y.expert : x.slot != y.slot ? x.slot < y.slot : a < b;
  });
  std::vector<Group>& groups = groups_;
  groups.clear();
  for (int64_t r = 0; r < J;) {
    int64_t r1 = r + 1;
    while (r1 < J && jobs[ord[r1]].expert == jobs[ord[r]].expert) ++r1;
    groups.push_back({r, r1 - r, &w.experts[size_t(jobs[ord[r]].expert)]});
    work.bytes += expert_weight_bytes(*groups.back().e);
    r = r1;
  }
  work.experts = int64_t(groups.size());
  const int64_t G = int64_t(groups.size());
  const int64_t nbA = (I + kRowsPerItem - 1) / kRowsPerItem, nbB = (H + kRowsPerItem - 1) / kRowsPerItem;
  const CpuCtx c{k_, scratch_, nullptr, bf16_inputs_};
  float* xg = xg_.data();
  float* act = act_.data();
  ParallelErrors errs;
#pragma omp parallel num_threads(n_threads_)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < J; ++r) {
      const float* src = xn + int64_t(jobs[ord[r]].token) * H;
      for (int64_t i = 0; i < H; ++i) xg[r * H + i] = linear_input(c, src[i]);
    }
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < G * nbA; ++it) errs.run([&] {
      const Group& g = groups[size_t(it / nbA)];
      const int64_t r0 = (it % nbA) * kRowsPerItem, nr = std::min(kRowsPerItem, I - r0);
      Scratch& sc = c.scratch.mine();
      ScratchMark mark(sc);
      float* gt = sc.take(size_t(g.n * nr));  // [n, nr]
      float* up = sc.take(size_t(g.n * nr));
      linear_rows(c, g.e->gate_proj, r0, nr, xg + g.row0 * H, H, g.n, gt, nr);
      linear_rows(c, g.e->up_proj, r0, nr, xg + g.row0 * H, H, g.n, up, nr);
      for (int64_t t = 0; t < g.n; ++t)
        for (int64_t i = 0; i < nr; ++i) act[(g.row0 + t) * I + r0 + i] = linear_input(c, silu(gt[t * nr + i]) * up[t * nr + i]);
    });
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < G * nbB; ++it) errs.run([&] {
      const Group& g = groups[size_t(it / nbB)];
      const int64_t r0 = (it % nbB) * kRowsPerItem, nr = std::min(kRowsPerItem, H - r0);
      Scratch& sc = c.scratch.mine();
      ScratchMark mark(sc);
      float* y = sc.take(size_t(g.n * nr));  // [n, nr]
      linear_rows(c, g.e->down_proj, r0, nr, act + g.row0 * I, I, g.n, y, nr);
      for (int64_t t = 0; t < g.n; ++t) {
        const CpuExpertJob& j = jobs[ord[g.row0 + t]];
        float* o = out + int64_t(ord[g.row0 + t]) * H + r0;
        for (int64_t i = 0; i < nr; ++i) o[i] = j.weight * y[t * nr + i];
      }
    });
  }
  errs.rethrow();
  return work;
}

}  // namespace hlwq
