// Device enumeration helper (see device_buffer.h).
#include "backend/cuda/device_buffer.h"

namespace hlwq::cuda {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later calls start clean
    return 0;
  }
  return n;
}

}  // namespace hlwq::cuda
