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
