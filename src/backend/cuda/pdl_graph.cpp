// Graph rewrite for programmatic dependent launch (see pdl_graph.h).
#include "backend/cuda/pdl_graph.h"

#include <vector>

#include "backend/cuda/cuda_check.h"

namespace hlwq::cuda {

size_t make_kernel_edges_programmatic(cudaGraph_t g, int device, bool enable) {
  if (!enable) return 0;
  int major = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "device {} capability",
                  device);
  if (major < 9) return 0;
  size_t n = 0;
  HLWQ_CUDA_CHECK(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &n), "counting graph edges");
  std::vector<cudaGraphNode_t> from(n), to(n);
  std::vector<cudaGraphEdgeData> data(n);
  HLWQ_CUDA_CHECK(cudaGraphGetEdges(g, from.data(), to.data(), data.data(), &n), "reading {} graph edges", n);
  auto is_kernel = [](cudaGraphNode_t node) {
    cudaGraphNodeType t{};
    HLWQ_CUDA_CHECK(cudaGraphNodeGetType(node, &t), "graph node type");
    return t == cudaGraphNodeTypeKernel;
  };
  std::vector<cudaGraphNode_t> kf, kt;
  std::vector<cudaGraphEdgeData> old_data;
  for (size_t i = 0; i < n; ++i) {
    if (data[i].type != cudaGraphDependencyTypeDefault || !is_kernel(from[i]) || !is_kernel(to[i])) continue;
    kf.push_back(from[i]);
    kt.push_back(to[i]);
    old_data.push_back(data[i]);
  }
  if (kf.empty()) return 0;
  HLWQ_CUDA_CHECK(cudaGraphRemoveDependencies(g, kf.data(), kt.data(), old_data.data(), kf.size()),
                  "removing {} kernel edges", kf.size());
  cudaGraphEdgeData prog{};
  prog.from_port = cudaGraphKernelNodePortProgrammatic;
  prog.type = cudaGraphDependencyTypeProgrammatic;
  const std::vector<cudaGraphEdgeData> new_data(kf.size(), prog);
  HLWQ_CUDA_CHECK(cudaGraphAddDependencies(g, kf.data(), kt.data(), new_data.data(), kf.size()),
                  "adding {} programmatic kernel edges", kf.size());
  return kf.size();
}

}  // namespace hlwq::cuda
