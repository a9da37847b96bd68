// CpuExpertsDev: the collect and scatter kernels, the side branch and its host node (see cpu_experts.cuh).
#include "backend/cuda/cpu_experts.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "backend/cpu/expert_jobs.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/pdl.cuh"
#include "core/error.h"

namespace hlwq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kCollectBlocks = 32;  // blocks copying xn (block 0 also builds the job list)
constexpr int64_t kScatterBlocks = 256;  // blocks of the scatter (each loops over jobs)

int64_t align256(int64_t x) { return (x + 255) / 256 * 256; }

// Block 0: every live tile of a CPU expert (mark[m] != 0, or any routed m < E when mark is null) becomes −1 in
// tile_mat and its token slots become jobs. Every block: xn [T, H] → host copy.
__global__ void collect_kernel(int* tile_mat, const int* __restrict__ slot_tok, const float* __restrict__ slot_w,
                               int max_tiles, int E, const uint8_t* __restrict__ mark, const float* __restrict__ xn,
                               int T, int H, int* hdr, CpuExpertJob* jobs, float* xn_host) {
  HLWQ_PDL_PREAMBLE();
  __shared__ int s_n;
  if (blockIdx.x == 0) {
    if (threadIdx.x == 0) s_n = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < max_tiles; i += blockDim.x) {
      const int m = tile_mat[i];
      if (m < 0 || m >= E || (mark && !mark[m])) continue;
      tile_mat[i] = -1;
      for (int s = 8 * i; s < 8 * i + 8; ++s) {
        const int t = slot_tok[s];
        if (t < 0) continue;
        CpuExpertJob& job = jobs[atomicAdd(&s_n, 1)];
        job.slot = s;
        job.token = t;
        job.expert = m;
        job.weight = slot_w[s];
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) hdr[0] = s_n, hdr[1] = T;
  }
  const int64_t n = int64_t(T) * H;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    xn_host[i] = xn[i];
  __threadfence_system();  // the host node reads these once the kernel has completed
}

// Job i's row (host) → y [slot of job i, 0..H).
__global__ void scatter_kernel(const int* hdr, const CpuExpertJob* jobs, const float* rows, int H, float* y) {
  HLWQ_PDL_PREAMBLE();
  const int n = *reinterpret_cast<const volatile int*>(hdr);
  for (int j = blockIdx.x; j < n; j += gridDim.x) {
    const float* src = rows + int64_t(j) * H;
    float* dst = y + int64_t(jobs[j].slot) * H;
    for (int c = threadIdx.x; c < H; c += blockDim.x) dst[c] = src[c];
  }
}

}  // namespace

CpuExpertsDev::CpuExpertsDev(const ModelWeights& w, int64_t Tm, int64_t k, int64_t n_static_layers)
    : w_(w), Tm_(Tm), k_(k), H_(w.layers.empty() ? 0 : w.layers[0].moe.router.in), Jm_(Tm * k),
      jobs_(std::make_unique<CpuExpertJobs>(
          H_, w.layers.empty() || w.layers[0].moe.experts.empty() ? 1 : w.layers[0].moe.experts[0].gate_proj.out,
          std::max<int64_t>(Tm * k, 1), CpuIsa::auto_detect, cpu_expert_threads_beside_gpu(), /*bf16_inputs=*/true)),
      n_static_(n_static_layers) {
  HLWQ_CHECK(!w.layers.empty() && Tm >= 1 && k >= 1, "CPU experts: {} layers, batches of {} tokens, top-{}",
             w.layers.size(), Tm, k);
  const int64_t o_job = align256(int64_t(sizeof(Header))), o_xn = o_job + align256(Jm_ * int64_t(sizeof(CpuExpertJob)));
  const int64_t o_out = o_xn + align256(Tm * H_ * 4), bytes = o_out + align256(Jm_ * H_ * 4);
  HLWQ_CUDA_CHECK(cudaHostAlloc(&pinned_, size_t(bytes), cudaHostAllocMapped), "pinned host buffers of the CPU "
                  "experts ({} bytes)", bytes);
  void* d = nullptr;
  HLWQ_CUDA_CHECK(cudaHostGetDevicePointer(&d, pinned_, 0), "device view of the CPU experts' buffers");
  auto* h = static_cast<uint8_t*>(pinned_);
  auto* dv = static_cast<uint8_t*>(d);
  hdr_ = reinterpret_cast<Header*>(h), d_hdr_ = reinterpret_cast<Header*>(dv);
  job_ = reinterpret_cast<CpuExpertJob*>(h + o_job), d_job_ = reinterpret_cast<CpuExpertJob*>(dv + o_job);
  xn_ = reinterpret_cast<float*>(h + o_xn), d_xn_ = reinterpret_cast<float*>(dv + o_xn);
  out_ = reinterpret_cast<float*>(h + o_out), d_out_ = reinterpret_cast<const float*>(dv + o_out);
  *hdr_ = Header{};
  HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "CPU experts' side stream");
  HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming), "CPU experts' fork event");
  HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming), "CPU experts' join event");
  for (size_t l = 0; l < w.layers.size(); ++l) tasks_.push_back(Task{this, int(l)});
}

CpuExpertsDev::~CpuExpertsDev() {
  if (side_) cudaStreamSynchronize(side_);  // no host node may still run on these buffers
  if (join_) cudaEventDestroy(join_);
  if (fork_) cudaEventDestroy(fork_);
  if (side_) cudaStreamDestroy(side_);
  if (pinned_) cudaFreeHost(pinned_);
}

void CpuExpertsDev::fork(int layer, const float* xn, int64_t T, int* tile_mat, const int* slot_tok,
                         const float* slot_w, int64_t max_tiles, int64_t E, const uint8_t* mark, cudaStream_t st) {
  rethrow_failure();
  HLWQ_CHECK(layer >= 0 && size_t(layer) < tasks_.size() && T >= 1 && T <= Tm_, "CPU experts: layer {} of {}, {} "
             "tokens (up to {})", layer, tasks_.size(), T, Tm_);
  const int blocks = int(std::clamp<int64_t>((T * H_ + kThreads - 1) / kThreads, 1, kCollectBlocks));
  collect_kernel<<<blocks, kThreads, 0, st>>>(tile_mat, slot_tok, slot_w, int(max_tiles), int(E), mark, xn, int(T),
                                              int(H_), reinterpret_cast<int*>(d_hdr_), d_job_, d_xn_);
  HLWQ_CUDA_LAUNCH_CHECK("CPU experts: collect (layer {}, {} tokens)", layer, T);
  HLWQ_CUDA_CHECK(cudaEventRecord(fork_, st), "CPU experts: fork (layer {})", layer);
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(side_, fork_, 0), "CPU experts: fork (layer {})", layer);
  HLWQ_CUDA_CHECK(cudaLaunchHostFunc(side_, &CpuExpertsDev::host_node, &tasks_[size_t(layer)]),
                  "CPU experts: host node (layer {})", layer);
  HLWQ_CUDA_CHECK(cudaEventRecord(join_, side_), "CPU experts: join (layer {})", layer);
}

void CpuExpertsDev::join(float* y, int64_t T, cudaStream_t st) {
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, join_, 0), "CPU experts: join");
  const int blocks = int(std::clamp<int64_t>(T * k_, 1, kScatterBlocks));
  scatter_kernel<<<blocks, kThreads, 0, st>>>(reinterpret_cast<const int*>(d_hdr_), d_job_, d_out_, int(H_), y);
  HLWQ_CUDA_LAUNCH_CHECK("CPU experts: scatter ({} tokens)", T);
}

void CpuExpertsDev::host_node(void* task) {
  const Task& t = *static_cast<const Task*>(task);
  t.self->run_layer(t.layer);
}

void CpuExpertsDev::run_layer(int layer) {
  const auto t0 = std::chrono::steady_clock::now();
  const volatile Header* vh = hdr_;  // written by the collect kernel
  const Header h{vh->n, vh->T};
  const int64_t n = std::clamp<int64_t>(h.n, 0, Jm_);
  try {  // nothing may throw into the driver's thread
    HLWQ_CHECK(h.n >= 0 && h.n <= Jm_ && h.T >= 1 && h.T <= Tm_, "CPU experts: {} jobs over {} tokens (room for {} "
               "and {})", h.n, h.T, Jm_, Tm_);
    const CpuExpertWork w = jobs_->run(w_.layers[size_t(layer)].moe, job_, n, xn_, h.T, out_);
    experts_ += w.experts;
    if (layer < n_static_) static_ += w.experts;
    rows_ += n;
    bytes_ += w.bytes;
  } catch (const std::exception& e) {
    std::fill(out_, out_ + n * H_, std::numeric_limits<float>::quiet_NaN());
    std::lock_guard<std::mutex> lock(err_mu_);
    if (error_.empty()) error_ = fmt::format("CPU experts of layer {}: {}", layer, e.what());
  }
  ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

void CpuExpertsDev::rethrow_failure() const {
  std::lock_guard<std::mutex> lock(err_mu_);
  HLWQ_CHECK(error_.empty(), "{}", error_);
}

CpuExpertCounters CpuExpertsDev::counters() const {
  HLWQ_CUDA_CHECK(cudaStreamSynchronize(side_), "CPU experts' side stream");
  rethrow_failure();
  return {experts_.load(), static_.load(), rows_.load(), bytes_.load(), ns_.load()};
}

CpuSplitCosts CpuExpertsDev::measure_cpu_costs() {
  using clock = std::chrono::steady_clock;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // one token of zeros through 1 and through J distinct experts of layer 0. Every expert of the layer runs once
  // first (the checkpoint is mapped: a page's first read faults it in, ~2 ms an expert, which serving pays once),
  // then each call takes experts the previous calls did not, so the layer's experts (larger than a last-level
  // cache) come from memory as in a step
  const MoeWeights& moe = w_.layers[0].moe;
  const int E = int(moe.experts.size()), J = int(std::min<int64_t>({4, E, Jm_}));
  HLWQ_CHECK(E > 0, "CPU experts: layer 0 has no routed experts to time");
  std::fill(xn_, xn_ + H_, 0.f);
  CpuExpertJob js[4];
  for (int e = 0; e < E; ++e) {
    js[0] = {0, 0, e, 1.f};
    jobs_->run(moe, js, 1, xn_, 1, out_);
  }
  // Each timed call is a host node, as in a step: it runs on the driver's callback thread while this thread waits
  // in cudaStreamSynchronize (spinning, as it does through a step), so the times hold the round trip and whatever
  // the two threads cost each other; the fixed part of the split is then the whole per-layer overhead.
  struct Call {
    CpuExpertJobs* jobs;
    const MoeWeights* moe;
    const CpuExpertJob* js;
    int n;
    const float* xn;
    float* out;
    bool failed;
  };
  auto host_call = [](void* p) {
    auto* c = static_cast<Call*>(p);
    try {
      c->jobs->run(*c->moe, c->js, c->n, c->xn, 1, c->out);
    } catch (...) {  // nothing may throw into the driver; reported below
      c->failed = true;
    }
  };
  int next = 0;
  auto call = [&](int n) {
    for (int j = 0; j < n; ++j) js[j] = {j, 0, next++ % E, 1.f};
    Call c{jobs_.get(), &moe, js, n, xn_, out_, false};
    const auto t0 = clock::now();
    HLWQ_CUDA_CHECK(cudaLaunchHostFunc(side_, host_call, &c), "timing the CPU experts");
    HLWQ_CUDA_CHECK(cudaStreamSynchronize(side_), "timing the CPU experts");
    HLWQ_CHECK(!c.failed, "CPU experts: a timing call of {} experts failed", n);
    return double(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count());
  };
  std::vector<double> t1, tJ;
  for (int i = 0; i < 5; ++i) t1.push_back(call(1)), tJ.push_back(call(J));
  const CpuCallCosts cpu = cpu_call_costs(median(t1), median(tJ), J);
  CpuSplitCosts c;
  c.cpu_ns = cpu.per_expert_ns;
  c.cpu_fixed_ns = cpu.fixed_ns;
  return c;
}

}  // namespace hlwq::cuda
