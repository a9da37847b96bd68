#include "cli/device_option.h"

#include "backend/cuda_backend.h"
#include "cli/options.h"

namespace hlwq::cli {

void add_device_option(CLI::App* sub, std::string& device) {
  sub->add_option("--device", device, "where the model runs: cpu or cuda (default: cuda when a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

Device resolve_device(const std::string& device) {
  if (device == "cpu") return Device::cpu;
  if (device.empty()) return cuda_devices() > 0 ? Device::cuda : Device::cpu;
  if (!cuda_compiled())
    usage_fail("--device cuda: this hlwq was built without CUDA (no nvcc at configure time, or -DHLWQ_CUDA=OFF); use "
               "--device cpu");
  if (cuda_devices() == 0) usage_fail("--device cuda: no CUDA device is visible (driver missing or no GPU); use --device cpu");
  return Device::cuda;
}

}  // namespace hlwq::cli
