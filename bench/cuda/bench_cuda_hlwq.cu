// hlwq_bench_cuda_hlwq: GB/s of the HLWQ codebook-lookup GEMM (hlwq_gemm.cuh) at 3, 4 and 5 bits beside the INT4
// kernel on the Qwen3.6 shapes (2048→512 experts, 512→2048 down, 2048→8192) at decode batches 1, 4, 16, the cost of
// the rotated activation pack (one FWHT per token and 128-column block) beside the plain pack, and the grouped MoE
// layer (256 experts of 2048→512, top-8 + shared) with HLWQ-4 and INT4 experts. Same method as
// bench_cuda_kernels.cu (whose helpers it shares): random weights made on the device, rotated over enough copies
// that every launch reads from DRAM, median of 15 graph replays; bytes = packed weights (+ scales) read,
// activations read and outputs written, once each. One line per measurement: "row kernel | shape | T | µs | GB/s |
// % of copy".
#include <cuda_runtime.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/gemm.cuh"
#include "backend/cuda/hlwq_gemm.cuh"
#include "backend/cuda/moe.cuh"
#include "bench_util.cuh"

namespace hlwq {
namespace {

using cuda::DeviceBuffer;
using cuda::PackedFormat;
using cuda::PackedLinear;

double g_copy = 0;

void row(const std::string& kernel, const std::string& shape, int T, double us, double bytes) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::printf("row %-26s | %-22s | %3d | %9.2f us | %7.0f GB/s | %5.1f %%\n", kernel.c_str(), shape.c_str(), T, us, gbs,
              100.0 * gbs / g_copy);
  std::fflush(stdout);
}

// bits 0: INT4; else HLWQ of that width (random codes, a uniform ascending codebook: the kernel's speed does not
// depend on the values).
PackedLinear random_packed(int bits, int64_t out, int64_t in, uint64_t seed) {
  PackedLinear w;
  w.format = bits ? PackedFormat::hlwq : PackedFormat::int4;
  w.out = out;
  w.in = in;
  w.out_pad = (out + 31) / 32 * 32;
  w.in_pad = (in + 127) / 128 * 128;
  const int b = bits ? bits : 4;
  w.q = DeviceBuffer<uint32_t>(size_t(w.out_pad * w.in_pad * b / 32), "bench weights");
  w.scale = DeviceBuffer<float>(size_t(w.out_pad * w.in_pad / 128), "bench scales");
  bench::fill_random(w.q.get(), int64_t(w.q.size()), seed);
  bench::fill_scales(w.scale.get(), int64_t(w.scale.size()), seed + 1);
  if (bits) {
    w.bits = bits;
    for (int i = 0; i < (1 << bits); ++i) w.codebook.push_back(-1.f + 2.f * float(i) / float((1 << bits) - 1));
    w.codebook_dev = DeviceBuffer<float>(w.codebook, "bench codebook");
  }
  return w;
}

std::string kernel_name(int bits) { return bits ? "hlwq" + std::to_string(bits) + " gemm" : "int4 gemm"; }

void bench_gemm(int bits, int64_t out, int64_t in, const std::string& name, cudaStream_t st, size_t l2) {
  const int64_t wbytes = random_packed(bits, 32, in, 0).bytes() / 32 * ((out + 31) / 32 * 32);
  const int64_t budget = int64_t(8) << 30;
  int R = int(std::max<int64_t>(1, (3 * int64_t(l2) + wbytes - 1) / wbytes));
  R = int(std::min<int64_t>(R, std::max<int64_t>(1, budget / wbytes)));
  std::vector<PackedLinear> ws;
  for (int i = 0; i < R; ++i) ws.push_back(random_packed(bits, out, in, 100 + 7 * uint64_t(i)));
  const int64_t Tmax = 16;
  DeviceBuffer<float> x(size_t(Tmax * in), "bench x"), y(size_t(Tmax * out), "bench y");
  bench::fill_random(x.get(), int64_t(x.size()), 5, 0x803FFFFFu, 0x3F000000u);  // fp32 in ±[0.5, 1)
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(Tmax, ws[0].in_pad)), "bench xfrag");
  (bits ? cuda::hlwq_pack_activations : cuda::pack_activations)(x.get(), in, Tmax, in, nullptr, Tmax, ws[0].in_pad,
                                                                xf.get(), st);
  const int n = std::max(R, 20);
  for (int T : {1, 4, 16}) {
    const double us = bench::time_graph(st, n, [&](int i) { cuda::gemm(ws[size_t(i % R)], xf.get(), T, y.get(), out, st); });
    row(kernel_name(bits), name, T, us, double(ws[0].bytes()) + double(T) * in * 2 + double(T) * out * 4);
  }
}

// The activation packs alone (x fp32 read, xfrag bf16 written).
void bench_pack(int64_t in, cudaStream_t st) {
  const int64_t Tmax = 16;
  DeviceBuffer<float> x(size_t(Tmax * in), "bench x");
  bench::fill_random(x.get(), int64_t(x.size()), 5, 0x803FFFFFu, 0x3F000000u);
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(Tmax, in)), "bench xfrag");
  for (int T : {1, 16})
    for (bool rot : {false, true}) {
      const double us = bench::time_graph(st, 20, [&](int) {
        (rot ? cuda::hlwq_pack_activations : cuda::pack_activations)(x.get(), in, T, in, nullptr, T, in, xf.get(), st);
      });
      row(rot ? "pack rotated (FWHT)" : "pack plain", std::to_string(in) + " columns", T, us,
          double(T) * in * 4 + double((T + 15) / 16 * 16) * in * 2);
    }
}

// L layers of a 256-expert MoE (Qwen3.6: H 2048, I 512, top-8 + shared) with bits-wide experts, each layer its
// own random weights and input; the whole block per layer (6 launches for INT4, 8 for HLWQ: the gather of the
// rotated xn by slot and the rotation of h).
void bench_moe(int bits, cudaStream_t st) {
  const int64_t H = 2048, E = 256, I = 512, k = 8, L = 16;
  std::vector<cuda::MoeLayerDev> layers(L);
  uint64_t seed = 1000;
  for (auto& m : layers) {
    m.H = H, m.E = E, m.k = k, m.I = I, m.n_shared = 1;
    PackedLinear r;  // the router is bf16 in every checkpoint
    r.format = PackedFormat::bf16;
    r.out = E + 1, r.in = H, r.out_pad = (E + 1 + 31) / 32 * 32, r.in_pad = H;
    r.q = DeviceBuffer<uint32_t>(size_t(r.out_pad * H / 2), "bench router");
    bench::fill_bf16(r.q.get(), int64_t(r.q.size()), seed++);
    m.router = std::move(r);
    for (int64_t e = 0; e <= E; ++e) {
      m.gate_up.push_back(random_packed(bits, 2 * I, H, seed++));
      m.down.push_back(random_packed(bits, H, I, seed++));
    }
    std::vector<const PackedLinear*> gu, dn;
    for (int64_t e = 0; e <= E; ++e) gu.push_back(&m.gate_up[size_t(e)]), dn.push_back(&m.down[size_t(e)]);
    m.gu = cuda::make_grouped(gu, "bench gate_up");
    m.dn = cuda::make_grouped(dn, "bench down");
  }
  for (int64_t T : {1, 4, 16}) {
    std::vector<cuda::MoeWorkspace> wss;
    std::vector<DeviceBuffer<float>> xs, outs;
    for (int64_t l = 0; l < L; ++l) {
      wss.push_back(cuda::make_moe_workspace(layers[size_t(l)], T));
      xs.emplace_back(size_t(T * H), "bench moe x");
      outs.emplace_back(size_t(T * H), "bench moe out");
      bench::fill_random(xs.back().get(), T * H, 77 + uint64_t(l), 0x803FFFFFu, 0x3F000000u);
    }
    double expert_bytes = 0, router_bytes = 0;
    for (int64_t l = 0; l < L; ++l) {
      cuda::moe_forward(layers[size_t(l)], wss[size_t(l)], xs[size_t(l)].get(), T, outs[size_t(l)].get(), false, st);
      HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "moe run");
      const auto ids = wss[size_t(l)].topk_ids.download();
      std::set<int> used(ids.begin(), ids.begin() + T * k);
      expert_bytes += double(used.size() + 1) * double(layers[size_t(l)].expert_bytes());
      router_bytes += double(layers[size_t(l)].router.bytes());
    }
    const double us = bench::time_graph(st, int(L), [&](int l) {
      cuda::moe_forward(layers[size_t(l)], wss[size_t(l)], xs[size_t(l)].get(), T, outs[size_t(l)].get(), false, st);
    });
    row(std::string(bits ? "hlwq" + std::to_string(bits) : "int4") + " moe layer", "256x(2048->512) top-8+1", int(T),
        us, (expert_bytes + router_bytes) / L + double(T) * H * 8);
  }
}

}  // namespace
}  // namespace hlwq

int main() {
  using namespace hlwq;
  try {
    cudaDeviceProp p{};
    HLWQ_CUDA_CHECK(cudaGetDeviceProperties(&p, 0), "device properties");
    cudaStream_t st;
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    const auto ceil = bench::measure_ceilings(st);
    g_copy = ceil.copy_kernel;
    std::printf("device %s, %d SMs, L2 %d MB; copy kernel %.0f GB/s, read kernel %.0f GB/s\n", p.name,
                p.multiProcessorCount, p.l2CacheSize >> 20, ceil.copy_kernel, ceil.read);
    std::printf("row %-26s | %-22s | %3s | %12s | %12s | %s\n", "kernel", "shape (in->out)", "T", "median", "bandwidth",
                "of copy");
    const size_t l2 = size_t(p.l2CacheSize);
    for (int bits : {0, 3, 4, 5}) {
      bench_gemm(bits, 512, 2048, "2048->512 (expert)", st, l2);
      bench_gemm(bits, 2048, 512, "512->2048 (down)", st, l2);
      bench_gemm(bits, 8192, 2048, "2048->8192", st, l2);
    }
    bench_gemm(2, 512, 2048, "2048->512 (expert)", st, l2);  // a generic width, for scale
    bench_gemm(8, 512, 2048, "2048->512 (expert)", st, l2);
    bench_pack(2048, st);
    bench_moe(0, st);
    bench_moe(4, st);
    std::printf("ceiling used for %%: copy kernel %.0f GB/s\n", g_copy);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cuda_hlwq: %s\n", e.what());
    return 1;
  }
  return 0;
}
