// DeviceBuffer<T>: an owning, move-only device allocation of n elements (plain cudaMalloc, never managed memory),
// with checked host<->device copies. Zero elements is valid (null pointer). The context string names the buffer
// in error messages. PinnedBuffer: page-locked host memory for asynchronous copies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.h"

namespace hlwq::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t n, std::string what) : n_(n), what_(std::move(what)) {
    if (n_ > 0) HLWQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)), "allocating {} ({} bytes)", what_, n_ * sizeof(T));
  }
  DeviceBuffer(const std::vector<T>& host, std::string what) : DeviceBuffer(host.size(), std::move(what)) {
    upload(host.data(), host.size());
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);  // no throw from a destructor; a failed free leaves nothing to recover
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

  void upload(const T* src, size_t n, size_t offset = 0) {
    HLWQ_CHECK(offset + n <= n_, "upload to {}: {} + {} elements past its size {}", what_, offset, n, n_);
    if (n) HLWQ_CUDA_CHECK(cudaMemcpy(p_ + offset, src, n * sizeof(T), cudaMemcpyHostToDevice), "upload to {}", what_);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) HLWQ_CUDA_CHECK(cudaMemcpy(h.data(), p_, bytes(), cudaMemcpyDeviceToHost), "download of {}", what_);
    return h;
  }

 private:
  void swap(DeviceBuffer& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(what_, o.what_);
  }
  T* p_ = nullptr;
  size_t n_ = 0;
  std::string what_;
};

// Pinned (page-locked) host memory for asynchronous copies, freed on destruction.
class PinnedBuffer {
 public:
  PinnedBuffer(size_t bytes, const char* what) {
    HLWQ_CUDA_CHECK(cudaHostAlloc(&p_, bytes, cudaHostAllocDefault), "pinned host buffer {} ({} bytes)", what, bytes);
  }
  ~PinnedBuffer() { cudaFreeHost(p_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
};

// Number of CUDA devices usable by this process (0 when there is no driver or no device; never throws).
int cuda_device_count();

}  // namespace hlwq::cuda
