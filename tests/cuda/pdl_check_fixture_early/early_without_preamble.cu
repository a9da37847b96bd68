// Negative case for pdl_preamble_check.cmake (never compiled): the first kernel reads early but never waits (the
// preamble of the kernel after it must not count for it), so the check must fail on this directory.
__global__ void early_kernel(const float* w, float* x) {
  HLWQ_PDL_EARLY_READS("w: weights");
  const float v = w[threadIdx.x];
  x[threadIdx.x] = v;
}

__global__ void good_kernel(float* x) {
  HLWQ_PDL_PREAMBLE();
  x[threadIdx.x] = 0.f;
}
