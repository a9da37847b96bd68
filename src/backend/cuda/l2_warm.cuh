// L2Warm: while layer l's MoE block runs, a kernel on a graph branch prefetches layer l+1's dense weights (mixer
// projections, norms, router, shared expert: about 20 MB on Qwen3.6) from HBM into the L2, so that l+1's decode
// GEMMs read them from the L2.
//
// Why: at a few tokens the dense GEMMs are latency chains, not bandwidth (a 2048→8192 INT4 GEMV reads 8.4 MB in
// ~7 µs, 1.3 TB/s: bench/cuda/NOTES.md), and the MoE block before them leaves the HBM mostly idle (router, routing
// and the fused expert kernel use ~20 % of it for ~25 µs a layer). The routed experts cannot be warmed this way:
// which ones run is known only after the routing.
//
// How: the weights are split on the host into pieces of kPieceBytes; one thread issues one
// cp.async.bulk.prefetch.L2 per piece (a hint: no data returns to the SM, nothing is written, and a dropped
// prefetch only costs the HBM read it would have saved). One launch of ≤ budget bytes a layer, the budget a
// fraction of the device's L2 (kL2Fraction): what is warmed must survive the layer's routed experts streaming
// through the L2 until it is read. Devices of compute capability < 9.0 have no bulk prefetch: nothing is warmed
// there (make_l2_warm returns null).
//
// Graph shape: issue() forks a branch off st right after the kernel that precedes the MoE block (the norm); the
// branch holds only the prefetch kernel; join() makes st wait for it, one layer later (the branch has long
// finished by then). A recorded decode step so replays it with no host involvement; every fork is joined before
// the layers end (end-of-schedule join), so a capture always closes.
// Only batches of ≤ kMaxWarmTokens tokens warm: a prefill re-reads every weight per token tile, from the L2 already.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/gemm.cuh"

namespace hlwq::cuda {

struct LayerDev;

struct L2Span {
  const void* p;
  int64_t bytes;
};

constexpr int64_t kMaxWarmTokens = 64;
constexpr int64_t kPieceBytes = 8 << 10;
constexpr int kL2Fraction = 3;  // at most l2 / 3 bytes warmed a layer

// The device buffers of layer L that its kernels read before its routed experts, in the order they read them
// (norms, mixer projections, router, shared expert).
std::vector<L2Span> layer_warm_spans(const LayerDev& L);
// Appends a buffer (one under 4 KB is left out: it costs a piece for a few lines) or a packed matrix's.
void add_warm_span(std::vector<L2Span>& out, const void* p, size_t bytes);
void add_warm_linear(std::vector<L2Span>& out, const PackedLinear& w);

class L2Warm {
 public:
  // layers[l]: the spans of layer l (layer_warm_spans), cut after `budget` bytes.
  L2Warm(const std::vector<std::vector<L2Span>>& layers, int64_t budget);
  ~L2Warm();
  L2Warm(const L2Warm&) = delete;
  L2Warm& operator=(const L2Warm&) = delete;

  // A new batch: a branch left unjoined by a failed forward is waited for here (outside any recording).
  void begin_batch();
  // Fork from st a branch that warms layer `layer`'s weights; joins any earlier branch first (one in flight).
  void issue(int layer, cudaStream_t st);
  // st waits for the branch in flight, if any.
  void join(cudaStream_t st);
  // A recording of st that failed: a branch still in it (a failure between fork and join) is joined, so that the
  // capture can end. No throw.
  void abandon(cudaStream_t st) noexcept;
  // Bytes warmed for layer `layer` (0: none).
  int64_t bytes(int layer) const { return bytes_[size_t(layer)]; }

 private:
  void release();
  DeviceBuffer<L2Span> pieces_;                   // all layers' pieces, layer after layer
  std::vector<int64_t> first_, count_, bytes_;  // [n_layers]: the layer's first piece, its piece count, its bytes
  cudaStream_t branch_ = nullptr;
  cudaEvent_t fork_ = nullptr, done_ = nullptr;
  bool pending_ = false;
};

// The warming of a model's layers on `device`, or null where the device cannot bulk-prefetch (cc < 9.0).
std::unique_ptr<L2Warm> make_l2_warm(const std::vector<LayerDev>& layers, int device);

}  // namespace hlwq::cuda
