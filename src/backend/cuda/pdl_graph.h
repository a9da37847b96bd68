// The host side of programmatic dependent launch (pdl.cuh): rewrites a recorded CUDA graph so that every
// kernel → kernel edge becomes a programmatic one. The downstream kernel is then launched as soon as every block
// of the upstream one has passed its HLWQ_PDL_PREAMBLE (instead of after the upstream grid has fully retired and
// the launch latency has been paid), and its own preamble waits for the upstream grid's completion and memory
// flush before any of its work. Edges to or from copies and other nodes stay as they were.
// Only on devices of compute capability ≥ 9.0 (earlier ones have no programmatic edges): elsewhere, and when
// `enable` is false, the graph is left unchanged. Returns the number of edges rewritten.
#pragma once
#include <cstddef>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

size_t make_kernel_edges_programmatic(cudaGraph_t g, int device, bool enable = true);

}  // namespace hlwq::cuda
