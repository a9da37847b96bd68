// Routed experts computed on the CPU for another backend (issue 8: --cpu-experts, --n-cpu-moe): the CUDA backend's
// host node hands over a list of (token, expert, weight) jobs of one MoE layer and the activations xn of the step;
// each job's output row is weight · down(silu(gate x) ⊙ up x), in fp32 from the checkpoint's weights (the same
// linear_rows the CPU backend's MoE uses, so the arithmetic is the CPU reference's), the GEMMs' inputs optionally
// rounded as the GPU rounds them (bf16_inputs). Jobs of one expert share one
// read of its weights; the work is split by (expert, block of output rows) in two phases inside one parallel region,
// as in moe.cpp. Jobs are grouped by (expert, slot), so the results do not depend on the order the caller lists
// them in (the CUDA side collects them with atomics) nor on the thread count.
// Not thread-safe: one caller at a time (the CUDA stream serializes the host nodes).
// Dimension legend: T tokens of the step, H hidden, I expert width, J jobs (≤ Jm).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/scratch.h"
#include "model/weights.h"

namespace hlwq {

struct CpuExpertJob {
  int32_t slot = -1;    // the caller's row for the result (the CUDA MoE's expert slot)
  int32_t token = -1;   // row of xn
  int32_t expert = -1;  // routed expert of the layer
  float weight = 0.f;   // routing weight the output is scaled by
};

// What one call did, for the counters (ExpertCacheStats).
struct CpuExpertWork {
  int64_t experts = 0;  // distinct experts computed
  int64_t bytes = 0;    // their weight bytes read from host memory (checkpoint format)
};

// Bytes of an expert's three matrices as stored in the checkpoint.
int64_t expert_weight_bytes(const ExpertWeights& e);

// The team for jobs run beside a thread that drives a GPU: the OpenMP default less one, at least 1. That thread
// waits for each step spinning (CUDA's default schedule with fewer contexts than cores), so a team as large as the
// cores could have a member descheduled at its barriers. (Not what limited --cpu-experts on the H200 host: teams of
// 15 and 8 ran alike there, bench/cuda/NOTES.md, eleventh session.)
int cpu_expert_threads_beside_gpu();

class CpuExpertJobs {
 public:
  // For jobs of up to Jm (token, expert) pairs over experts of width I and hidden size H, on n_threads threads
  // (0: the caller's OpenMP default). bf16_inputs: xn and SiLU(gate)·up rounded to bf16 before their GEMMs, as the
  // GPU's expert kernels read them (cpu_ctx.h), so an expert gives the same result on either device up to the
  // order of fp32 sums.
  CpuExpertJobs(int64_t H, int64_t I, int64_t Jm, CpuIsa isa = CpuIsa::auto_detect, int n_threads = 0,
                bool bf16_inputs = false);

  // out [J, H]: row i = jobs[i]'s weighted expert output; xn fp32 [T, H]. Throws on a job outside the layer or
  // the tokens, or more than Jm jobs. (Pointer and count, not a span: nvcc compiles the CUDA side as C++17.)
  CpuExpertWork run(const MoeWeights& w, const CpuExpertJob* jobs, int64_t J, const float* xn, int64_t T, float* out);

 private:
  int64_t H_, I_, Jm_;
  // Fixed at construction: the CUDA backend calls run from the driver's callback thread, whose OpenMP default is
  // not what the user set (-t) on the main thread.
  int n_threads_;
  bool bf16_inputs_;
  const CpuKernels& k_;
  ScratchSet scratch_;
  struct Group {
    int64_t row0, n;  // rows [row0, row0 + n) of the sorted order
    const ExpertWeights* e;
  };
  std::vector<int32_t> order_;  // [J] jobs sorted by (expert, slot)
  std::vector<Group> groups_;   // ≤ Jm experts of one call (reserved: a host node allocates nothing)
  std::vector<float> xg_, act_;  // [Jm, H] gathered inputs, [Jm, I] silu(gate)·up
};

}  // namespace hlwq
