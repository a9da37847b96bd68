// Negative case for pdl_preamble_check.cmake (never compiled): the second kernel lacks the preamble, so the
// check must fail on this directory.
__global__ void good_kernel(float* x) {
  HLWQ_PDL_PREAMBLE();
  x[threadIdx.x] = 0.f;
}

__global__ void __launch_bounds__(128) bad_kernel(float* x) {
  x[threadIdx.x] = 1.f;
}
