// ParallelErrors: carries an exception out of an OpenMP parallel region to the caller (used by the CPU kernels,
// the quantization pipeline and evaluation alike).
//
// GCC treats the body of every `#pragma omp parallel` region as must-not-throw: an exception escaping it
// (HLWQ_CHECK, std::bad_alloc from a scratch vector) calls std::terminate instead of reaching main()'s handler.
// Each unit of work inside the region runs through run(), which keeps the first exception; rethrow() after the
// region (once every thread has joined) throws it on the calling thread.
//
//   ParallelErrors errs;
//   #pragma omp parallel
//   {
//     std::vector<float> buf;
//     errs.run([&] { buf.resize(n); });                 // per-thread scratch
//   #pragma omp for
//     for (int64_t i = 0; i < m; ++i) errs.run([&] { work(i, buf); });
//   }
//   errs.rethrow();
//
// Wrap each loop iteration, never a whole `omp for`: a thread that jumped out of a worksharing loop would skip
// its implicit barrier and hang the team. After the first failure run() skips the remaining work (the result is
// discarded anyway), which also keeps an iteration from using scratch whose allocation failed on its thread.
// No lock is taken (an atomic flag elects the one writer), so guards may nest: an inner region's guard
// rethrows into the enclosing region's run().
#pragma once
#include <atomic>
#include <exception>
#include <utility>

namespace hlwq {

class ParallelErrors {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      std::forward<F>(f)();
    } catch (...) {
      bool expected = false;
      // Only the first thread to fail writes error_; the region's closing barrier publishes it to rethrow().
      if (failed_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
    }
  }

  // Call after the parallel region has ended, on the thread that started it.
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

}  // namespace hlwq
