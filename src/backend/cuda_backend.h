// The CUDA backend as the rest of hlwq sees it: a factory that exists in every build. In a build without CUDA
// (cmake/cuda.cmake found no nvcc, or HLWQ_CUDA=OFF) it refuses with a clear error, and cuda_devices() is 0, so
// callers choose the CPU by default and `--device cuda` fails with a message instead of a link error.
// The backend itself lives in src/backend/cuda/ (cuda_backend_impl.h); nothing outside it includes CUDA headers.
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/cuda_ceilings.h"
#include "io/hf_config.h"
#include "model/weights.h"
#include "moe/cpu_split.h"
#include "moe/layer_stream.h"
#include "moe/prefetch_arbiter.h"

namespace hlwq {

struct CudaBackendOptions {
  int device = 0;  // CUDA device ordinal
  // Capture the layer schedule of each decode batch shape as a CUDA graph and replay it (tests turn it off to
  // compare the graph against plain launches).
  bool graphs = true;
  // Expert cache (SPEC §7): 0 keeps every expert on the GPU; N ≥ 1 keeps every routed expert in pinned host
  // memory and N slots per MoE layer on the GPU (expert_cache_dev.cuh).
  int64_t expert_slots = 0;
  // Device memory budget in bytes (0: none). With it, everything but the routed experts is placed first and the
  // rest becomes expert slots (expert_slots, when also given, is then an upper bound).
  int64_t gpu_memory = 0;
  // With an expert cache: prefetch the next layer's predicted experts on a copy stream (moe_prefetch.cuh); auto
  // times decode steps with and without it and keeps the faster (moe/prefetch_arbiter.h).
  PrefetchMode moe_prefetch = PrefetchMode::automatic;
  // With an expert cache: batches of at least this many tokens stream each MoE layer's missing experts through
  // two staging buffers (moe_stream.cuh) instead of reading them in place per tile; 0 never streams.
  int64_t moe_stream_min_tokens = kDefaultStreamMinTokens;
  // Routed experts on the CPU (moe/cpu_split.h): with an expert cache, which misses the CPU computes (off, auto
  // from the measured PCIe and CPU costs, all); and the first n_cpu_moe MoE layers' routed experts, which are
  // then computed on the CPU only and never placed on the device (0 ≤ n_cpu_moe ≤ the layer count).
  CpuExperts cpu_experts = CpuExperts::off;
  int64_t n_cpu_moe = 0;
  CpuSplitCosts split_costs;  // auto's costs; all zero: measured at load (tests pin them to force a split)
  // Programmatic dependent launch between the kernels of a recorded decode step (Hopper and later; pdl.cuh):
  // bench turns it off to measure what it saves.
  bool programmatic_launch = true;
};

// True when this binary was built with the CUDA backend.
bool cuda_compiled();
// Number of CUDA devices usable by this process: 0 without CUDA support, a driver or a device (never throws).
int cuda_devices();

// cfg and w must outlive the backend. Every weight is uploaded (repacked for the GPU kernels) at construction.
std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& cfg, const ModelWeights& w, const BackendLimits& lim,
                                           const CudaBackendOptions& opt);

}  // namespace hlwq
