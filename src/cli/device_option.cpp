#include "cli/device_option.h"

#include <fmt/format.h>

#include "backend/cuda_backend.h"
#include "cli/commands.h"
#include "cli/options.h"

namespace hlwq::cli {

void add_device_option(CLI::App* sub, std::string& device) {
  sub->add_option("--device", device, "where the model runs: cpu or cuda (default: cuda when a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

void add_device_options(CLI::App* sub, DeviceArgs& a) {
  add_device_option(sub, a.device);
  sub->add_option("--moe-expert-cache-size", a.expert_cache,
                  "routed experts per MoE layer kept on the GPU; the rest stay in host memory (0: all on the GPU)")
      ->check(whole_in(0, 1 << 20));
  sub->add_option("--gpu-memory", a.gpu_memory,
                  "device memory budget, e.g. 12GB: everything else first, the rest becomes expert slots (cuda)")
      ->each([&a](const std::string&) { a.gpu_memory_given = true; });
  sub->add_option("--cpu-experts", a.cpu_experts,
                  "with an expert cache, cache misses computed on the CPU instead of crossing PCIe: off, auto (per "
                  "step, from the PCIe and CPU speeds measured at load) or all (cuda)")
      ->check(CLI::IsMember({"off", "auto", "all"}));
  sub->add_option("--n-cpu-moe", a.n_cpu_moe,
                  "routed experts of the first K MoE layers computed on the CPU, none of them on the GPU (cuda)")
      ->check(whole_in(0, 1 << 20));
  sub->add_option("--moe-prefetch", a.prefetch,
                  "with an expert cache: copy the next layer's predicted experts while this layer computes: on, off, "
                  "or auto (cuda: decode steps timed both ways, the faster kept and re-timed every 512 steps)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str();
}

void apply_device_args(const DeviceArgs& a, LoadOptions& lo) {
  lo.device = resolve_device(a.device);
  lo.moe_expert_cache_size = int(a.expert_cache);
  if (a.gpu_memory_given) {
    const int64_t b = parse_gpu_budget(a.gpu_memory, "--gpu-memory");  // a bad size is named before the device
    if (lo.device != Device::cuda) usage_fail("--gpu-memory {} needs --device cuda", a.gpu_memory);
    lo.gpu_memory = b;
  }
  lo.cpu_experts = a.cpu_experts == "all" ? CpuExperts::all : a.cpu_experts == "auto" ? CpuExperts::automatic
                                                                                       : CpuExperts::off;
  lo.n_cpu_moe = a.n_cpu_moe;
  lo.moe_prefetch = *parse_prefetch_mode(a.prefetch);  // checked by the option
  if ((lo.cpu_experts != CpuExperts::off || lo.n_cpu_moe > 0) && lo.device != Device::cuda)
    usage_fail("--cpu-experts {} / --n-cpu-moe {} move routed experts from the GPU to the CPU: they need --device "
               "cuda (on --device cpu every expert already runs on the CPU)", a.cpu_experts, a.n_cpu_moe);
}

int64_t parse_gpu_budget(const std::string& value, const char* option) {
  const uint64_t b = parse_size_option(value, option);
  if (b < (uint64_t(1) << 20)) usage_fail("{} {}: a budget below 1 MiB cannot hold a model", option, value);
  return int64_t(b);
}

std::string expert_cache_summary(const Model& m) {
  const auto s = m.expert_cache_stats();
  if (!s) return {};
  std::string r;
  if (s->lookups() > 0)
    r = fmt::format("expert cache: {:.1f} % hits ({} hits, {} loaded into slots, {} read in place{}{}), {:.2f} GB "
                    "over PCIe; copies {:.1f} ms, {:.1f} ms of it not hidden by compute", 100.0 * s->hit_rate(),
                    s->hits, s->misses, s->streamed,
                    s->staged ? fmt::format(", {} streamed with their layer", s->staged) : std::string(),
                    s->cpu_only ? fmt::format(", {} computed on the CPU instead", s->cpu_only) : std::string(),
                    double(s->bytes_copied) / 1e9, double(s->copy_ns) / 1e6, double(s->copy_exposed_ns) / 1e6);
  const int64_t steps = s->steps_prefetching + s->steps_not_prefetching;  // counted by the CUDA backend only
  if (s->prefetched > 0 || steps > 0)
    r += fmt::format("{}prefetch: {} experts ({} used, {} wasted){}", r.empty() ? "" : "; ", s->prefetched,
                     s->prefetch_hits, s->prefetch_wasted,
                     steps > 0 ? fmt::format(", on in {} of {} decode steps", s->steps_prefetching, steps) : "");
  if (s->cpu_experts > 0)
    r += fmt::format("{}CPU experts: {} computed on the CPU, {:.2f} GB read from host memory, {:.1f} ms",
                     r.empty() ? "" : "; ", s->cpu_experts, double(s->cpu_bytes) / 1e9, double(s->cpu_ns) / 1e6);
  return r;
}

Device resolve_device(const std::string& device, const char* option) {
  if (device == "cpu") return Device::cpu;
  if (device.empty()) return cuda_devices() > 0 ? Device::cuda : Device::cpu;
  if (!cuda_compiled())
    usage_fail("{} cuda: this hlwq was built without CUDA (no nvcc at configure time, or -DHLWQ_CUDA=OFF); use "
               "{} cpu", option, option);
  if (cuda_devices() == 0)
    usage_fail("{} cuda: no CUDA device is visible (driver missing or no GPU); use {} cpu", option, option);
  return Device::cuda;
}

}  // namespace hlwq::cli
