// Scratch: per-thread bump allocators over buffers allocated when the CPU backend is made, so that kernels take
// their temporary buffers without allocating inside a forward. Each OpenMP thread uses its own arena
// (ScratchSet::mine(), indexed by omp_get_thread_num(); outside a parallel region that is arena 0). A ScratchMark
// gives back everything taken after it when it goes out of scope, so nested users (an op that calls a matmul)
// share one arena in stack order. Taking more than an arena holds is a sizing bug: a clear error, never a
// reallocation. Not thread-safe by design: one arena per thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hlwq {

class Scratch {
 public:
  explicit Scratch(size_t floats = 0) : buf_(floats) {}
  float* take(size_t n);  // n floats, 64-byte aligned; throws when the arena is exhausted
  size_t used() const { return used_; }
  size_t capacity() const { return buf_.size(); }

 private:
  friend class ScratchMark;
  std::vector<float> buf_;
  size_t used_ = 0;
};

class ScratchMark {
 public:
  explicit ScratchMark(Scratch& s) : s_(s), used_(s.used_) {}
  ~ScratchMark() { s_.used_ = used_; }
  ScratchMark(const ScratchMark&) = delete;
  ScratchMark& operator=(const ScratchMark&) = delete;

 private:
  Scratch& s_;
  size_t used_;
};

class ScratchSet {
 public:
  // One arena of `floats` per thread, for up to n_threads threads.
  ScratchSet(int n_threads, size_t floats);
  Scratch& mine();  // the calling thread's arena; throws if the team is larger than the set
  int n_threads() const { return int(arenas_.size()); }
  size_t floats_per_thread() const { return arenas_.empty() ? 0 : arenas_[0].capacity(); }

 private:
  std::vector<Scratch> arenas_;
};

}  // namespace hlwq
