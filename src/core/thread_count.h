// The worker-thread count a user asks for (--threads), bounded: libgomp crashes creating 100,000 threads, and
// more than a few threads per core only adds contention. Over the cap the count is lowered with a warning.
#pragma once
#include <cstdio>

namespace hlwq {

// Largest accepted count: 4 threads per core (at least 4), and never more than 1024.
int max_thread_count();
// requested <= 0 means "all cores" and is returned unchanged; above max_thread_count() the cap is returned and
// a warning naming both numbers goes to `warn` (when not null).
int cap_thread_count(int requested, std::FILE* warn);

}  // namespace hlwq
