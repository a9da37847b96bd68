// L2Warm (see l2_warm.cuh).
#include "backend/cuda/l2_warm.cuh"

#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_weights.h"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kWarmThreads = 32;
constexpr int64_t kMinSpanBytes = 4 << 10;

// One thread a piece; pieces [n] of 16-byte aligned addresses and sizes (multiples of 16, ≤ kPieceBytes).
__global__ void __launch_bounds__(kWarmThreads) l2_warm_kernel(const L2Span* pieces, int n) {
  HLWQ_PDL_EARLY_READS("the piece table is written once at load and the weights by no kernel; a prefetch writes "
                       "nothing");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const int i = blockIdx.x * kWarmThreads + threadIdx.x;
  if (i < n) {
    const L2Span s = pieces[i];
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(s.p), "r"(uint32_t(s.bytes)) : "memory");
  }
#endif
  HLWQ_PDL_PREAMBLE();
}

void add_fused(std::vector<L2Span>& out, const FusedLinearDev& f) {
  for (const FusedLinearDev::Part& p : f.parts) add_warm_linear(out, p.w);
}

}  // namespace

void add_warm_span(std::vector<L2Span>& out, const void* p, size_t bytes) {
  if (p && int64_t(bytes) >= kMinSpanBytes) out.push_back({p, int64_t(bytes)});
}

void add_warm_linear(std::vector<L2Span>& out, const PackedLinear& w) {
  add_warm_span(out, w.q.get(), w.q.bytes());
  add_warm_span(out, w.scale.get(), w.scale.bytes());
}

std::vector<L2Span> layer_warm_spans(const LayerDev& L) {
  std::vector<L2Span> s;
  add_warm_span(s, L.input_norm.get(), L.input_norm.bytes());
  if (L.attention) {
    add_fused(s, L.attn.qkv);
    add_fused(s, L.attn.o);
  } else {
    add_fused(s, L.gdn.qkvz);
    add_fused(s, L.gdn.ba);
    add_warm_span(s, L.gdn.conv_w.get(), L.gdn.conv_w.bytes());
    add_fused(s, L.gdn.out);
  }
  add_warm_span(s, L.post_norm.get(), L.post_norm.bytes());
  add_warm_linear(s, L.moe.router);
  // the shared expert's parts are the last n_shared matrices of every upload (moe.cuh)
  const size_t n = L.moe.gate_up.size(), S = size_t(L.moe.n_shared);
  for (size_t i = n - std::min(n, S); i < n; ++i) {
    add_warm_linear(s, L.moe.gate_up[i]);
    add_warm_linear(s, L.moe.down[i]);
  }
  return s;
}

L2Warm::L2Warm(const std::vector<std::vector<L2Span>>& layers, int64_t budget) {
  std::vector<L2Span> pieces;
  for (const std::vector<L2Span>& spans : layers) {
    first_.push_back(int64_t(pieces.size()));
    int64_t left = budget;
    for (const L2Span& sp : spans) {
      // device buffers start 256-byte aligned; a tail under 16 bytes is left cold
      const int64_t n = std::min(sp.bytes, left) / 16 * 16;
      for (int64_t o = 0; o < n; o += kPieceBytes)
        pieces.push_back({static_cast<const char*>(sp.p) + o, std::min(kPieceBytes, n - o)});
      left -= n;
    }
    count_.push_back(int64_t(pieces.size()) - first_.back());
    bytes_.push_back(budget - left);
  }
  if (!pieces.empty()) pieces_ = DeviceBuffer<L2Span>(pieces, "L2 warm pieces");
  try {
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&branch_, cudaStreamNonBlocking), "L2 warm branch stream");
    HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "L2 warm event");
    HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "L2 warm event");
  } catch (...) {
    release();
    throw;
  }
}

L2Warm::~L2Warm() { release(); }

void L2Warm::release() {
  if (fork_) cudaEventDestroy(fork_);
  if (done_) cudaEventDestroy(done_);
  if (branch_) cudaStreamDestroy(branch_);
  fork_ = done_ = nullptr;
  branch_ = nullptr;
}

void L2Warm::begin_batch() {
  if (pending_) HLWQ_CUDA_CHECK(cudaStreamSynchronize(branch_), "L2 warm branch of an unfinished batch");
  pending_ = false;
}

void L2Warm::issue(int layer, cudaStream_t st) {
  const size_t l = size_t(layer);
  if (count_[l] == 0) return;
  join(st);
  HLWQ_CUDA_CHECK(cudaEventRecord(fork_, st), "L2 warm fork (layer {})", layer);
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(branch_, fork_, 0), "L2 warm fork (layer {})", layer);
  const int n = int(count_[l]);
  l2_warm_kernel<<<(n + kWarmThreads - 1) / kWarmThreads, kWarmThreads, 0, branch_>>>(pieces_.get() + first_[l], n);
  HLWQ_CUDA_CHECK(cudaGetLastError(), "L2 warm of layer {} ({} pieces)", layer, n);
  HLWQ_CUDA_CHECK(cudaEventRecord(done_, branch_), "L2 warm done (layer {})", layer);
  pending_ = true;
}

void L2Warm::join(cudaStream_t st) {
  if (!pending_) return;
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, done_, 0), "L2 warm join");
  pending_ = false;
}

void L2Warm::abandon(cudaStream_t st) noexcept {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(branch_, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusActive &&
      cudaEventRecord(done_, branch_) == cudaSuccess)
    cudaStreamWaitEvent(st, done_, 0);
  pending_ = false;
}

std::unique_ptr<L2Warm> make_l2_warm(const std::vector<LayerDev>& layers, int device) {
  int major = 0, l2 = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "device {}", device);
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device), "device {}", device);
  if (major < 9 || l2 <= 0) return nullptr;
  std::vector<std::vector<L2Span>> spans;
  for (const LayerDev& L : layers) spans.push_back(layer_warm_spans(L));
  return std::make_unique<L2Warm>(spans, int64_t(l2) / kL2Fraction);
}

}  // namespace hlwq::cuda
