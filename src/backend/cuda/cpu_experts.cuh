// Routed experts computed on the CPU inside the CUDA backend's MoE step (issue 8 item 3: --cpu-experts,
// --n-cpu-moe; the split and its cost model: src/moe/cpu_split.h). The step stays one CUDA graph:
//
//   main stream:  route → slot plan (marks the CPU's experts) → collect ─┬─ pack → grouped gate_up → grouped down ─┬→ scatter → combine
//   side stream:                                                          └→ host node (CPU experts) ──────────────┘
//
// collect (one kernel) takes the tiles of the CPU's experts out of the plan (tile_mat −1: the grouped kernels skip
// them, so every routed (token, expert) pair is computed exactly once), lists them as jobs (slot, token, expert,
// weight) and copies xn [T, H] into pinned, device-mapped host memory; an event forks the side stream, whose host
// node (cudaLaunchHostFunc: no CUDA call inside) computes each job's weighted output row on the host's threads
// (CpuExpertJobs, fp32 from the checkpoint) into pinned mapped memory; the main stream waits for it only after its
// own grouped kernels, and scatter copies the rows into the expert-output slots y, where the unchanged combine adds
// them with the GPU's. What crosses PCIe per layer and step: xn (T·H·4 bytes) out, J·H·4 bytes of rows back.
// The synchronisation that remains is that join: the combine waits for the CPU, so a step costs
// max(GPU experts, host round trip + CPU experts) per layer; the round trip, with the CPU call's own fixed part, is
// measured at load (cpu_fixed_ns).
// Buffers are shared by the layers: the main stream orders layer l's scatter before layer l+1's collect.
// A failure inside the host node (it cannot throw into the driver) writes NaN rows and is rethrown by the next
// enqueue or counters call.
// Dimension legend: T tokens, H hidden, k active experts, E routed experts, J jobs ≤ Jm = Tm·k.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "model/weights.h"
#include "moe/cpu_split.h"

namespace hlwq {
// backend/cpu/expert_jobs.h, kept out of this header: its CPU scratch types would leak into every .cu that
// includes moe.cuh
class CpuExpertJobs;
struct CpuExpertJob;
}  // namespace hlwq

namespace hlwq::cuda {

struct CpuExpertCounters {
  int64_t experts = 0;  // distinct experts computed on the CPU, summed over layers and steps
  int64_t static_experts = 0;  // of those, in the first n_static_layers (--n-cpu-moe)
  int64_t rows = 0;     // (token, expert) pairs
  int64_t bytes = 0;    // expert weight bytes the CPU read from host memory
  int64_t ns = 0;       // wall time of the host nodes
};

class CpuExpertsDev {
 public:
  // For batches of up to Tm tokens of the model w (every MoE layer alike: E experts, top-k, width I, hidden H);
  // the first n_static_layers are --n-cpu-moe's (counted apart).
  CpuExpertsDev(const ModelWeights& w, int64_t Tm, int64_t k, int64_t n_static_layers);
  ~CpuExpertsDev();
  CpuExpertsDev(const CpuExpertsDev&) = delete;
  CpuExpertsDev& operator=(const CpuExpertsDev&) = delete;

  // After the slot plan, before the grouped kernels: moves the tiles of the CPU's experts (mark [E] != 0, or every
  // routed expert when mark is null) out of tile_mat [max_tiles] into the job list and forks the host node.
  void fork(int layer, const float* xn, int64_t T, int* tile_mat, const int* slot_tok, const float* slot_w,
            int64_t max_tiles, int64_t E, const uint8_t* mark, cudaStream_t st);
  // After the grouped kernels: waits for the host node, then y [slots, H] rows of the jobs = the CPU's rows.
  void join(float* y, int64_t T, cudaStream_t st);

  // Measured now (the device idle): one token through 1 and through 4 experts, each call a host node timed from
  // this thread as a step's is (round trip included), split into a part per expert and a fixed part per layer and
  // step (cpu_call_costs); pcie_ns is the caller's (cpu_split.h).
  CpuSplitCosts measure_cpu_costs();
  CpuExpertCounters counters() const;  // rethrows a host node's failure
  void rethrow_failure() const;

 private:
  struct Header {
    int n = 0, T = 0;  // jobs, tokens of the step
  };
  struct Task {
    CpuExpertsDev* self;
    int layer;
  };
  static void host_node(void* task);
  void run_layer(int layer);

  const ModelWeights& w_;
  int64_t Tm_, k_, H_, Jm_;
  std::unique_ptr<CpuExpertJobs> jobs_;
  void* pinned_ = nullptr;           // [Header | jobs Jm | xn Tm·H | out Jm·H], mapped
  Header* hdr_ = nullptr;
  CpuExpertJob* job_ = nullptr;
  float* xn_ = nullptr;
  float* out_ = nullptr;
  Header* d_hdr_ = nullptr;          // the device's views of the same
  CpuExpertJob* d_job_ = nullptr;
  float* d_xn_ = nullptr;
  const float* d_out_ = nullptr;
  cudaStream_t side_ = nullptr;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  std::vector<Task> tasks_;          // [layers], stable addresses: the recorded host nodes point at them
  int64_t n_static_;
  std::atomic<int64_t> experts_{0}, static_{0}, rows_{0}, bytes_{0}, ns_{0};
  mutable std::mutex err_mu_;
  std::string error_;                // the first host-node failure
};

}  // namespace hlwq::cuda
