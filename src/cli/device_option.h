// --device cpu|cuda, the same in every command that runs a model (run, chat, eval, serve, bench): where the model
// computes. Without the option: cuda when this binary has the CUDA backend and a GPU is visible, else cpu.
// With it the expert-offload options (vLLM's spelling): --moe-expert-cache-size N routed experts per MoE layer on
// the GPU, the rest in host memory; --gpu-memory SIZE a device memory budget, what is left after everything else
// becomes expert slots. On the CPU the cache runs with host-memory slots (same results, its counters show the
// traffic a GPU would see); a budget needs --device cuda.
// Routed experts on the CPU (cuda): --n-cpu-moe K (llama.cpp's spelling and meaning: the routed experts of the first
// K MoE layers computed on the CPU, none of them on the GPU) and --cpu-experts off|auto|all (with a cache: which
// misses the CPU computes instead of PCIe carrying them; src/moe/cpu_split.h). "auto" and "all" rather than a
// boolean: auto decides per step from the bandwidths measured at load, all forces every miss to the CPU.
// --moe-prefetch on|off|auto: with a cache, the next layer's router applied to this layer's hidden state predicts
// its experts, which are copied while this layer computes. Whether that pays depends on the model and the machine
// (BENCHMARKS.md, "prefetch"), so the default, auto, times decode steps both ways on the GPU and keeps the faster
// (moe/prefetch_arbiter.h); on the CPU auto is on.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace hlwq::cli {

struct DeviceArgs {
  std::string device;       // "" = the default
  int64_t expert_cache = 0;  // --moe-expert-cache-size
  std::string gpu_memory;    // --gpu-memory, e.g. "12GB"
  bool gpu_memory_given = false;  // also when its value is empty (then refused, not ignored)
  std::string cpu_experts = "off";  // --cpu-experts off|auto|all
  int64_t n_cpu_moe = 0;            // --n-cpu-moe K
  std::string prefetch = "auto";    // --moe-prefetch on|off|auto
};

void add_device_option(CLI::App* sub, std::string& device);
void add_device_options(CLI::App* sub, DeviceArgs& a);  // --device and the two offload options
// Sets lo.device, the expert cache and the budget (UsageError for what cannot be honoured).
void apply_device_args(const DeviceArgs& a, LoadOptions& lo);
// A device memory budget as `option` gave it ("12GB"): its bytes, or a UsageError naming the option and the value
// (not a size, or below the 1 MiB no model fits in). Shared by --gpu-memory and quantize's --calib-gpu-memory.
int64_t parse_gpu_budget(const std::string& value, const char* option);
// "expert cache: 93.1 % hits (…), 1.25 GB copied or read over PCIe[, CPU experts: …]" for a model with a cache or
// CPU experts, else "".
std::string expert_cache_summary(const Model& m);
// "" (the option not given) picks the default; "cuda" without CUDA support or a GPU is a UsageError that says which
// (naming `option`).
Device resolve_device(const std::string& device, const char* option = "--device");

}  // namespace hlwq::cli
