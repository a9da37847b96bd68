// MoePrefetcher (see moe_prefetch.cuh).
#include "backend/cuda/moe_prefetch.cuh"

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"

namespace hlwq::cuda {

MoePrefetcher::MoePrefetcher(int n_layers, int64_t router_rows)
    : logits_(size_t(kMaxPrefetchTokens * router_rows), "expert prefetch router logits") {
  HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "expert prefetch copy stream");
  fork_.assign(size_t(n_layers), nullptr);
  read_.assign(size_t(n_layers), nullptr);
  done_.assign(size_t(n_layers), nullptr);
  pending_.assign(size_t(n_layers), 0);
  try {
    for (int l = 0; l < n_layers; ++l) {
      HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&fork_[size_t(l)], cudaEventDisableTiming), "prefetch event");
      HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&read_[size_t(l)], cudaEventDisableTiming), "prefetch event");
      HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&done_[size_t(l)], cudaEventDisableTiming), "prefetch event");
    }
  } catch (...) {
    release();
    throw;
  }
}

MoePrefetcher::~MoePrefetcher() { release(); }

void MoePrefetcher::release() {
  for (cudaEvent_t e : fork_)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : read_)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : done_)
    if (e) cudaEventDestroy(e);
  fork_.clear(), read_.clear(), done_.clear();
  if (copy_) cudaStreamDestroy(copy_);
  copy_ = nullptr;
}

void MoePrefetcher::begin_batch() {
  bool any = false;
  for (uint8_t& p : pending_) any = any || p, p = 0;
  reading_ = -1;
  if (any) HLWQ_CUDA_CHECK(cudaStreamSynchronize(copy_), "expert prefetch copies of an unfinished batch");
}

void MoePrefetcher::issue(int layer, const MoeLayerDev& L, const uint32_t* x_tok, int64_t T, cudaStream_t st) {
  if (!L.cache || T > kMaxPrefetchTokens || T < 1) return;
  HLWQ_CHECK(int64_t(logits_.size()) >= T * L.router.out, "expert prefetch: router of {} rows, logits for {}",
             L.router.out, logits_.size() / size_t(kMaxPrefetchTokens));
  const size_t l = size_t(layer);
  HLWQ_CUDA_CHECK(cudaEventRecord(fork_[l], st), "prefetch fork (layer {})", layer);
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(copy_, fork_[l], 0), "prefetch fork (layer {})", layer);
  gemm(L.router, x_tok, T, logits_.get(), L.router.out, copy_);
  HLWQ_CUDA_CHECK(cudaEventRecord(read_[l], copy_), "prefetch input read (layer {})", layer);
  reading_ = layer;
  expert_cache_prefetch(*L.cache, logits_.get(), L.router.out, T, L.k,
                        ExpertTables{L.gu.q.get(), L.gu.scale.get(), L.dn.q.get(), L.dn.scale.get()}, copy_);
  expert_cache_prefetch_copy(*L.cache, T * L.k, copy_);
  HLWQ_CUDA_CHECK(cudaEventRecord(done_[l], copy_), "prefetch copies done (layer {})", layer);
  pending_[l] = 1;
}

void MoePrefetcher::release_input(cudaStream_t st) {
  if (reading_ < 0) return;
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, read_[size_t(reading_)], 0), "prefetch input released (layer {})", reading_);
  reading_ = -1;
}

void MoePrefetcher::join(int layer, cudaStream_t st) {
  const size_t l = size_t(layer);
  if (!pending_[l]) return;
  HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, done_[l], 0), "prefetch join (layer {})", layer);
  pending_[l] = 0;
}

}  // namespace hlwq::cuda
