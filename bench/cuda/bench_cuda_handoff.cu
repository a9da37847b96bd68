// hlwq_bench_cuda_handoff: what it costs a decode step to hand work to the CPU and wait for it, the way
// `--cpu-experts` / `--n-cpu-moe` do (cpu_experts.cuh: a host node in the step's graph runs the CPU experts on an
// OpenMP team) and the way they could (a CPU thread that polls a flag in pinned, device-mapped memory, and a kernel
// that polls the answer). v84 (bench/cuda/NOTES.md) measured ~390 µs a layer of fixed cost around 23 µs an expert.
//
// Each variant is a graph of R iterations: a kernel that spins for `gap` µs (the GPU work between two hand-offs:
// ~50 µs a layer in decode, ~2 ms from one token's last CPU layer to the next token's first), then the hand-off:
//   base         an empty kernel (no hand-off: subtract it)
//   hostfn       a host node that does nothing
//   hostfn+omp N a host node that opens an OpenMP parallel region of N threads (each writes one word)
//   flag         a kernel writes a sequence number into mapped host memory, a CPU thread spinning on it answers,
//                and a kernel spins until the answer arrives
//   flag+omp N   the same, the CPU thread opening the parallel region before it answers
// Prints "row handoff | variant | gap µs | µs an iteration"; the cost of a hand-off is its row less base's.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.cuh"

namespace hlwq {
namespace {

constexpr int kTeam[] = {15, 8};

__global__ void spin_kernel(long long ns) {
  HLWQ_PDL_PREAMBLE();
  long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  while (t - t0 < ns);
}

__global__ void empty_kernel() { HLWQ_PDL_PREAMBLE(); }

// flag[0]: the GPU's request number, flag[16]: the CPU's answer (other cache lines)
__global__ void signal_kernel(unsigned* flag) {
  HLWQ_PDL_PREAMBLE();
  volatile unsigned* f = flag;
  f[0] = f[16] + 1;
  __threadfence_system();
}

__global__ void wait_kernel(const unsigned* flag) {
  HLWQ_PDL_PREAMBLE();
  const volatile unsigned* f = flag;
  const unsigned want = f[0];
  while (f[16] < want) {
  }
}

struct Team {
  int n = 0;
  std::vector<unsigned> words = std::vector<unsigned>(16 * 64);
  void run() {
#pragma omp parallel num_threads(n)
    words[size_t(omp_get_thread_num()) * 16] += 1;
  }
};

void host_empty(void*) {}
void host_team(void* p) { static_cast<Team*>(p)->run(); }

// The CPU side of the flag hand-off: answers every request, opening team's region first when team.n > 0.
struct Responder {
  unsigned* flag;  // host view of the mapped words
  Team* team;
  std::atomic<bool> stop{false};
  std::thread th;
  Responder(unsigned* f, Team* t) : flag(f), team(t), th([this] { loop(); }) {}
  ~Responder() {
    stop = true;
    th.join();
  }
  void loop() {
    unsigned seen = __atomic_load_n(&flag[16], __ATOMIC_ACQUIRE);
    while (!stop.load(std::memory_order_relaxed)) {
      const unsigned g = __atomic_load_n(&flag[0], __ATOMIC_ACQUIRE);
      if (g == seen) {
        _mm_pause();
        continue;
      }
      if (team && team->n > 0) team->run();
      __atomic_store_n(&flag[16], g, __ATOMIC_RELEASE);
      seen = g;
    }
  }
};

void row(const std::string& variant, int gap_us, double us) {
  std::printf("row handoff | %-13s | %5d | %8.2f us an iteration\n", variant.c_str(), gap_us, us);
  std::fflush(stdout);
}

}  // namespace
}  // namespace hlwq

int main() {
  using namespace hlwq;
  try {
    cudaStream_t st;
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    unsigned* flag_h = nullptr;
    HLWQ_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&flag_h), 4096, cudaHostAllocMapped), "flag words");
    std::fill(flag_h, flag_h + 1024, 0u);
    unsigned* flag_d = nullptr;
    HLWQ_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&flag_d), flag_h, 0), "flag device view");
    std::printf("OpenMP: %d threads by default, OMP_WAIT_POLICY=%s\n", omp_get_max_threads(),
                std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "(unset)");
    for (const int gap : {0, 50, 1000}) {
      const int R = gap >= 1000 ? 20 : 100;
      auto time = [&](const std::function<void()>& handoff) {
        return bench::time_graph(st, R, [&](int) {
          spin_kernel<<<1, 32, 0, st>>>(gap * 1000LL);
          handoff();
        }, 2, 7);
      };
      row("base", gap, time([&] { empty_kernel<<<1, 32, 0, st>>>(); }));
      row("hostfn", gap, time([&] {
            HLWQ_CUDA_CHECK(cudaLaunchHostFunc(st, host_empty, nullptr), "host node");
          }));
      for (const int n : kTeam) {
        Team team;
        team.n = n;
        row("hostfn+omp " + std::to_string(n), gap, time([&] {
              HLWQ_CUDA_CHECK(cudaLaunchHostFunc(st, host_team, &team), "host node");
            }));
      }
      {
        Responder r(flag_h, nullptr);
        row("flag", gap, time([&] {
              signal_kernel<<<1, 1, 0, st>>>(flag_d);
              wait_kernel<<<1, 1, 0, st>>>(flag_d);
            }));
      }
      for (const int n : kTeam) {
        Team team;
        team.n = n;
        Responder r(flag_h, &team);
        row("flag+omp " + std::to_string(n), gap, time([&] {
              signal_kernel<<<1, 1, 0, st>>>(flag_d);
              wait_kernel<<<1, 1, 0, st>>>(flag_d);
            }));
      }
    }
    HLWQ_CUDA_CHECK(cudaFreeHost(flag_h), "flag words");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cuda_handoff: %s\n", e.what());
    return 1;
  }
  return 0;
}
