// Host side of the thread-block-cluster kernels (moe_fused.cu, moe_router_one.cu): a launch configuration of
// one-dimensional clusters, and how many clusters of a kernel the device runs at once.
#pragma once
#include <cstddef>

#include <cuda_runtime.h>

namespace hlwq::cuda {

// cudaLaunchKernelEx's configuration for clusters of C blocks along x; cfg points at attr, so it stays in place.
struct ClusterLaunch {
  cudaLaunchAttribute attr{};
  cudaLaunchConfig_t cfg{};
  ClusterLaunch(int C, dim3 grid, int threads, size_t smem, cudaStream_t st) {
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = unsigned(C);
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.gridDim = grid;
    cfg.blockDim = dim3(unsigned(threads));
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

// Clusters of C blocks of `threads` threads and smem bytes of dynamic shared memory that the device co-schedules
// (cudaOccupancyMaxActiveClusters); 0 where it cannot run that size (a size past its limit is an error there,
// cleared here). Non-portable sizes (> 8) need cudaFuncAttributeNonPortableClusterSizeAllowed set first.
template <typename... Args>
int co_scheduled_clusters(void (*kern)(Args...), int C, int threads, size_t smem) {
  const ClusterLaunch l(C, dim3(unsigned(C)), threads, smem, nullptr);
  int n = 0;
  if (cudaOccupancyMaxActiveClusters(&n, kern, &l.cfg) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace hlwq::cuda
