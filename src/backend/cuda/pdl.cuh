// Programmatic dependent launch (Hopper and later): lets the decode graph start kernel k+1 while kernel k drains,
// instead of paying the full launch latency (1.5–3 µs, bench/cuda/NOTES.md) between every pair of the ~680
// kernels of a step.
//
// The contract, for every __global__ in src/backend/cuda (tests/cuda/pdl_preamble_check.cmake enforces it):
// the kernel's first statement is HLWQ_PDL_PREAMBLE(). It waits until every earlier kernel in the stream has
// completed and its writes are visible (griddepcontrol.wait), then allows the next kernel to be scheduled
// (griddepcontrol.launch_dependents), which only happens once every block of this kernel has reached that point.
// With the wait first, a kernel never reads anything early, so correctness is the same as without PDL; what is
// overlapped is the next kernel's launch, not its work. On older GPUs, and for kernels launched without the
// programmatic attribute or edge, both instructions are no-ops.
//
// Early reads. Because every kernel waits before it releases its dependents, all kernels before the one launched
// right before a kernel have completed when that kernel starts. So a kernel may read, before its wait, what its
// direct predecessor does not write (weights, state that only this kernel writes), and have those loads in flight
// while the predecessor drains. Such a kernel's first statement is HLWQ_PDL_EARLY_READS("what, and why it is
// safe"), which compiles to nothing, and HLWQ_PDL_PREAMBLE() follows in its body before anything else is read and
// before any return: a block that exits counts as released, and if every block left before waiting, the next kernel
// could start while the one before this is still running.
//
// The host side, pdl_graph.h, turns the kernel→kernel edges of a recorded graph into programmatic edges.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define HLWQ_PDL_PREAMBLE()                               \
  do {                                                    \
    asm volatile("griddepcontrol.wait;" ::: "memory");    \
    asm volatile("griddepcontrol.launch_dependents;" ::); \
  } while (0)
#else
#define HLWQ_PDL_PREAMBLE() \
  do {                      \
  } while (0)
#endif

#define HLWQ_PDL_EARLY_READS(why) \
  do {                            \
  } while (0)
