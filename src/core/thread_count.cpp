#include "core/thread_count.h"

#include <omp.h>

#include <algorithm>

namespace hlwq {

int max_thread_count() { return std::min(1024, std::max(4, 4 * omp_get_num_procs())); }

int cap_thread_count(int requested, std::FILE* warn) {
  const int cap = max_thread_count();
  if (requested <= cap) return requested;
  if (warn)
    std::fprintf(warn, "hlwq: warning: --threads %d is more than this machine can use (%d cores); using %d\n",
                 requested, omp_get_num_procs(), cap);
  return cap;
}

}  // namespace hlwq
