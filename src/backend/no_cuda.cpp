// The CUDA backend factory of a build without CUDA (see cuda_backend.h).
#include "backend/cuda_backend.h"

#include "core/error.h"

namespace hlwq {

bool cuda_compiled() { return false; }
int cuda_devices() { return 0; }

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, const ModelWeights&, const BackendLimits&,
                                           const CudaBackendOptions&) {
  fail("this hlwq was built without CUDA (no nvcc at configure time, or -DHLWQ_CUDA=OFF): use --device cpu, or "
       "rebuild with the CUDA toolkit installed");
}

}  // namespace hlwq

namespace hlwq {

CudaCeilings measure_cuda_ceilings(int) { fail("this hlwq was built without CUDA: no device ceilings to measure"); }

}  // namespace hlwq
