// CudaBackend (cuda_backend.h): being written; this commit only wires the factory.
#include "backend/cuda_backend.h"

#include "backend/cuda/device_buffer.h"
#include "core/error.h"

namespace hlwq {

bool cuda_compiled() { return true; }
int cuda_devices() { return cuda::cuda_device_count(); }

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, const ModelWeights&, const BackendLimits&,
                                           const CudaBackendOptions&) {
  fail("--device cuda: the CUDA backend is not wired to the model yet");
}

}  // namespace hlwq
