// Device ceilings for benchmarks (C++17, no CUDA types: .cu files include it too). Implemented in
// cuda/ceilings.cu, or refusing in a build without CUDA (no_cuda.cpp).
#pragma once
#include <string>

namespace hlwq {

// Ceilings of the device measured now, for benchmarks to report fractions of: GB/s of a read-only kernel and of a
// copy kernel (bytes read + written) over 2 GiB of device memory, of pinned host→device copies (PCIe), 256 MiB,
// and the bf16 tensor-core rate in TFLOP/s of mma.sync, the instruction hlwq's GEMMs use (0 before Ampere).
// Each the median of several timed runs after a warm-up. Throws when there is no CUDA device.
struct CudaCeilings {
  double read_gbs = 0, copy_gbs = 0, h2d_pinned_gbs = 0, tc_bf16_tflops = 0;
  std::string device_name;
};
CudaCeilings measure_cuda_ceilings(int device = 0);

}  // namespace hlwq
