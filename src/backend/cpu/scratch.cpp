// Scratch arenas (see scratch.h).
#include "backend/cpu/scratch.h"

#include <omp.h>

#include "core/error.h"

namespace hlwq {

float* Scratch::take(size_t n) {
  constexpr size_t kAlignFloats = 16;  // 64 bytes: whole cache lines, aligned AVX loads possible
  const size_t start = (used_ + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  HLWQ_CHECK(start + n <= buf_.size(),
             "CPU scratch arena exhausted: {} floats asked, {} of {} in use (the backend sized its workspace too "
             "small: a bug)", n, start, buf_.size());
  used_ = start + n;
  return buf_.data() + start;
}

ScratchSet::ScratchSet(int n_threads, size_t floats) {
  HLWQ_CHECK(n_threads >= 1, "scratch set needs at least one thread, got {}", n_threads);
  arenas_.reserve(size_t(n_threads));
  for (int i = 0; i < n_threads; ++i) arenas_.emplace_back(floats + 64);  // + alignment slack
}

Scratch& ScratchSet::mine() {
  const int t = omp_get_thread_num();
  HLWQ_CHECK(t < int(arenas_.size()),
             "thread {} has no CPU scratch arena: the model was loaded for {} threads (set the thread count before "
             "loading)", t, arenas_.size());
  return arenas_[size_t(t)];
}

}  // namespace hlwq
