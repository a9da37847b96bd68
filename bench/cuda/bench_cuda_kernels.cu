// hlwq_bench_cuda_kernels: GB/s of the INT4/bf16 tensor-core GEMM (decode batches 1, 4, 16) and of the grouped MoE
// layer on Qwen3.6 shapes, against the device-to-device copy bandwidth measured in the same run.
// Weights are random bits made on the device, rotated over enough copies (≥ 3× the L2) that every launch reads
// them from DRAM; each timing is the median over 15 replays of a CUDA graph of many launches (so launch gaps
// are the in-graph ones, ≈ 0.5 µs), after 3 warm-up replays. Bytes counted: packed weights (+ scales) read,
// activations read and outputs written, once each. Prints one line per measurement: "row kernel | shape | T | µs |
// GB/s | % of copy"; the decode GEMMs also with their weights in the L2; then the mixers' prefill GEMMs on both kernels
// (TFLOP/s against the mma.sync ceiling). Argument `gemm`, `prefill` or `moe`: that part only (for a profiler, `moe`:
// its first runs are plain launches, 7 per layer and 16 layers per batch size, before any graph).
#include <cuda_runtime.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemm_tiled.cuh"
#include "backend/cuda/moe.cuh"
#include "backend/cuda_ceilings.h"
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

PackedLinear random_packed(PackedFormat f, int64_t out, int64_t in, uint64_t seed) {
  PackedLinear w;
  w.format = f;
  w.out = out;
  w.in = in;
  w.out_pad = (out + 31) / 32 * 32;
  w.in_pad = (in + 127) / 128 * 128;
  if (f == PackedFormat::int4) {
    w.q = DeviceBuffer<uint32_t>(size_t(w.out_pad * w.in_pad / 8), "bench int4");
    w.scale = DeviceBuffer<float>(size_t(w.out_pad * w.in_pad / 128), "bench scales");
    bench::fill_random(w.q.get(), int64_t(w.q.size()), seed);
    bench::fill_scales(w.scale.get(), int64_t(w.scale.size()), seed + 1);
  } else {
    w.q = DeviceBuffer<uint32_t>(size_t(w.out_pad * w.in_pad / 2), "bench bf16");
    bench::fill_bf16(w.q.get(), int64_t(w.q.size()), seed);
  }
  return w;
}

void bench_gemm(PackedFormat f, int64_t out, int64_t in, const std::string& name, cudaStream_t st, size_t l2) {
  const int64_t wbytes = random_packed(f, 32, in, 0).bytes() / 32 * ((out + 31) / 32 * 32);
  const int64_t budget = int64_t(8) << 30;
  int R = int(std::max<int64_t>(1, (3 * int64_t(l2) + wbytes - 1) / wbytes));
  R = int(std::min<int64_t>(R, std::max<int64_t>(1, budget / wbytes)));
  std::vector<PackedLinear> ws;
  for (int i = 0; i < R; ++i) ws.push_back(random_packed(f, out, in, 100 + 7 * uint64_t(i)));
  const int64_t Tmax = 16;
  DeviceBuffer<float> x(size_t(Tmax * in), "bench x"), y(size_t(Tmax * out), "bench y");
  bench::fill_random(x.get(), int64_t(x.size()), 5, 0x803FFFFFu, 0x3F000000u);  // fp32 in ±[0.5, 1)
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(Tmax, ws[0].in_pad)), "bench xfrag");
  cuda::pack_activations(x.get(), in, Tmax, in, nullptr, Tmax, ws[0].in_pad, xf.get(), st);
  const int n = std::max(R, 20);
  for (int T : {1, 4, 16}) {
    const double us = bench::time_graph(st, n, [&](int i) { cuda::gemm(ws[size_t(i % R)], xf.get(), T, y.get(), out, st); });
    row(std::string(f == PackedFormat::int4 ? "int4 gemm" : "bf16 gemm"), name, T, us,
        double(ws[0].bytes()) + double(T) * in * 2 + double(T) * out * 4);
  }
  // The same matrix every launch, so from the L2 after the first: what a decode GEMM costs when DRAM is not what it
  // waits on (bench/cuda/NOTES.md, fourteenth session: ~1 µs less of 4–7, so warming the L2 cannot pay).
  if (3 * wbytes <= int64_t(l2)) {
    const double us = bench::time_graph(st, n, [&](int) { cuda::gemm(ws[0], xf.get(), 1, y.get(), out, st); });
    row(std::string(f == PackedFormat::int4 ? "int4 gemm, L2" : "bf16 gemm, L2"), name, 1, us,
        double(ws[0].bytes()) + double(in) * 2 + double(out) * 4);
  }
}

// Prefill GEMMs of the mixers (INT4, Qwen3.6 shapes) on both kernels, gemm.cu's fragment kernel and the large-tile
// one (gemm_tiled.cuh), and which of them gemm() takes: TFLOP/s beside the mma.sync ceiling
// measured in the same run. One matrix, from the L2 after the first tile: the prefill GEMMs are compute-bound.
void bench_prefill_gemm(int64_t out, int64_t in, const std::string& name, cudaStream_t st, double tc_tflops) {
  const PackedLinear w = random_packed(PackedFormat::int4, out, in, 300);
  const int64_t Tmax = 4096;
  DeviceBuffer<float> x(size_t(Tmax * in), "bench x"), y(size_t(Tmax * out), "bench y");
  bench::fill_random(x.get(), int64_t(x.size()), 7, 0x803FFFFFu, 0x3F000000u);
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(Tmax, w.in_pad)), "bench xfrag");
  cuda::pack_activations(x.get(), in, Tmax, in, nullptr, Tmax, w.in_pad, xf.get(), st);
  for (int T : {128, 512, 4096}) {
    const double flop = 2.0 * double(T) * double(out) * double(in);
    for (bool tiled : {false, true}) {
      const double us = bench::time_graph(st, 4, [&](int) {
        if (tiled) cuda::gemm_tiled_int4(w, xf.get(), T, y.get(), out, st);
        else cuda::gemm_fragment(w, xf.get(), T, y.get(), out, st);
      });
      const double tf = flop / (us * 1e-6) / 1e12;
      std::printf("row %-26s | %-22s | %4d | %9.2f us | %6.1f TFLOP/s | %5.1f %% of mma.sync%s\n",
                  tiled ? "prefill gemm, tiled" : "prefill gemm, fragment", name.c_str(), T, us, tf,
                  100.0 * tf / tc_tflops, tiled == cuda::gemm_tiled_pays(w, T) ? " | gemm() takes it" : "");
      std::fflush(stdout);
    }
  }
}

// L layers of a 256-expert MoE (Qwen3.6: H 2048, I 512, top-8 + shared), each with its own random weights and
// input, so the experts read per layer come from DRAM.
void bench_moe(cudaStream_t st) {
  const int64_t H = 2048, E = 256, I = 512, k = 8, L = 16;
  std::vector<cuda::MoeLayerDev> layers(L);
  uint64_t seed = 1000;
  for (auto& m : layers) {
    m.H = H, m.E = E, m.k = k, m.I = I, m.n_shared = 1;
    m.router = random_packed(PackedFormat::bf16, E + 1, H, seed++);
    for (int64_t e = 0; e <= E; ++e) {
      m.gate_up.push_back(random_packed(PackedFormat::int4, 2 * I, H, seed++));
      m.down.push_back(random_packed(PackedFormat::int4, H, I, seed++));
    }
    std::vector<const PackedLinear*> gu, dn;
    for (int64_t e = 0; e <= E; ++e) gu.push_back(&m.gate_up[size_t(e)]), dn.push_back(&m.down[size_t(e)]);
    m.gu = cuda::make_grouped(gu, "bench gate_up");
    m.dn = cuda::make_grouped(dn, "bench down");
  }
  for (int64_t T : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}) {
    std::vector<cuda::MoeWorkspace> wss;
    std::vector<DeviceBuffer<float>> xs, outs;
    for (int64_t l = 0; l < L; ++l) {
      wss.push_back(cuda::make_moe_workspace(layers[size_t(l)], T));
      xs.emplace_back(size_t(T * H), "bench moe x");
      outs.emplace_back(size_t(T * H), "bench moe out");
      bench::fill_random(xs.back().get(), T * H, 77 + uint64_t(l), 0x803FFFFFu, 0x3F000000u);
    }
    // one plain run builds every layer's plan; count the distinct experts each layer reads
    double expert_bytes = 0, router_bytes = 0;
    for (int64_t l = 0; l < L; ++l) {
      cuda::moe_forward(layers[size_t(l)], wss[size_t(l)], xs[size_t(l)].get(), T, outs[size_t(l)].get(), false, st);
      HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "moe run");
      const auto ids = wss[size_t(l)].topk_ids.download();
      std::set<int> used(ids.begin(), ids.begin() + T * k);
      expert_bytes += double(used.size() + 1) * double(layers[size_t(l)].expert_bytes());
      router_bytes += double(layers[size_t(l)].router.bytes());
    }
    const double act = double(T) * H * 4 * 2;  // x in, out written
    const double full = bench::time_graph(st, int(L), [&](int l) {
      cuda::moe_forward(layers[size_t(l)], wss[size_t(l)], xs[size_t(l)].get(), T, outs[size_t(l)].get(), false, st);
    });
    row("moe layer (moe_forward)", "256x(2048->512) top-8+1", int(T), full, (expert_bytes + router_bytes) / L + act);
    const int64_t tiles = cuda::moe_max_tiles(T, k, E, 1);
    auto part = [&](const char* name, double bytes, const std::function<void(cuda::MoeLayerDev&, cuda::MoeWorkspace&, int)>& f) {
      const double us = bench::time_graph(st, int(L), [&](int l) { f(layers[size_t(l)], wss[size_t(l)], l); });
      row(std::string("  moe part: ") + name, "per layer", int(T), us, bytes);
      return us;
    };
    part("pack xn", double(T) * H * 6, [&](auto& m, auto& w, int l) {
      cuda::pack_activations(xs[size_t(l)].get(), H, T, H, nullptr, T, m.router.in_pad, w.x_tok.get(), st);
    });
    part("router gemm (bf16)", router_bytes / L, [&](auto& m, auto& w, int) {
      cuda::gemm(m.router, w.x_tok.get(), T, w.logits.get(), m.router.out, st);
    });
    part("route + plan", 0, [&](auto& m, auto& w, int) {
      cuda::MoePlan plan{w.topk_ids.get(), w.topk_w.get(), w.slot_tok.get(), w.slot_w.get(), w.tile_mat.get(),
                         w.tok_slot.get()};
      cuda::moe_route(w.logits.get(), m.router.out, T, E, k, 1, plan, tiles, st);
    });
    if (T == 1 && wss[0].router_one.available())  // both of the above in one launch, at each cluster size
      for (const int C : cuda::kRouterOneClusters) {
        const std::string name = "router + plan, cluster " + std::to_string(C) +
                                 (C == wss[0].router_one.cluster ? " (used)" : "");
        part(name.c_str(), router_bytes / L, [&](auto& m, auto& w, int) {
          cuda::MoePlan plan{w.topk_ids.get(), w.topk_w.get(), w.slot_tok.get(), w.slot_w.get(), w.tile_mat.get(),
                             w.tok_slot.get()};
          cuda::router_one(w.router_one, m.router, w.x_tok.get(), w.logits.get(), E, k, 1, plan, tiles, st, C);
        });
      }
    part("grouped gate_up+silu", expert_bytes / L * 2 / 3, [&](auto& m, auto& w, int) {  // reads x_tok by slot
      cuda::gemm_grouped(m.gu, cuda::GroupedEpilogue::swiglu, w.x_tok.get(), w.tile_mat.get(), tiles, w.h.get(),
                         m.dn.in_pad, nullptr, 0, nullptr, st, 0, w.slot_tok.get());
    });
    part("grouped down+weight", expert_bytes / L / 3, [&](auto& m, auto& w, int) {
      cuda::gemm_grouped(m.dn, cuda::GroupedEpilogue::weighted, w.h.get(), w.tile_mat.get(), tiles, nullptr, 0,
                         w.y.get(), H, w.slot_w.get(), st);
    });
    part("combine", 0, [&](auto& m, auto& w, int l) {
      cuda::moe_combine(w.y.get(), w.tok_slot.get(), T, k + 1, H, false, outs[size_t(l)].get(), st);
    });
    const double grouped = bench::time_graph(st, int(L), [&](int l) {
      auto& m = layers[size_t(l)];
      auto& w = wss[size_t(l)];
      cuda::gemm_grouped(m.gu, cuda::GroupedEpilogue::swiglu, w.x_tok.get(), w.tile_mat.get(), tiles, w.h.get(),
                         m.dn.in_pad, nullptr, 0, nullptr, st, 0, w.slot_tok.get());
      cuda::gemm_grouped(m.dn, cuda::GroupedEpilogue::weighted, w.h.get(), w.tile_mat.get(), tiles, nullptr, 0,
                         w.y.get(), H, w.slot_w.get(), st);
    });
    const bool tiled = cuda::gemm_grouped_tiled_pays(layers[0].gu, tiles);
    row(tiled ? "moe grouped (tiled)" : "moe grouped gate_up+down", "256x(2048->512) top-8+1", int(T), grouped,
        expert_bytes / L);
    if (T >= 128)  // both kernels alone, whichever gemm_grouped takes: where the dispatch rule comes from
      for (const bool t : {false, true}) {
        const double us = bench::time_graph(st, int(L), [&](int l) {
          auto& m = layers[size_t(l)];
          auto& w = wss[size_t(l)];
          auto f = t ? cuda::gemm_grouped_tiled_int4 : cuda::gemm_grouped_fragment;
          f(m.gu, cuda::GroupedEpilogue::swiglu, w.x_tok.get(), w.tile_mat.get(), tiles, w.h.get(), m.dn.in_pad,
            nullptr, 0, nullptr, st, tiles, w.slot_tok.get());
          f(m.dn, cuda::GroupedEpilogue::weighted, w.h.get(), w.tile_mat.get(), tiles, nullptr, 0, w.y.get(), H,
            w.slot_w.get(), st, tiles, nullptr);
        });
        row(t ? "  tiled kernel alone" : "  fragment kernel alone", "256x(2048->512) top-8+1", int(T), us,
            expert_bytes / L);
      }
    const cuda::FusedMlp& fm = wss[0].fused;
    for (int i = 0; i < cuda::kFusedSizes; ++i) {  // every cluster size; moe_forward runs the one marked "used"
      const int C = cuda::kFusedClusters[i];
      if (fm.wave_tiles[i] == 0) continue;
      const double fused = bench::time_graph(st, int(L), [&](int l) {
        auto& m = layers[size_t(l)];
        auto& w = wss[size_t(l)];
        cuda::fused_mlp(w.fused, m.gu, m.dn, w.x_tok.get(), w.slot_tok.get(), w.tile_mat.get(), tiles, tiles * 8,
                        w.h.get(), w.y.get(), H, w.slot_w.get(), st, {}, C);
      });
      const bool used = fm.runs(tiles) && fm.cluster_for(tiles) == C;
      row("moe fused, cluster " + std::to_string(C) + (used ? " (used)" : ""), "256x(2048->512) top-8+1", int(T),
          fused, expert_bytes / L);
      if (T == 1)
        std::printf("fused expert MLP: clusters of %d blocks: %lld plan tiles a wave\n", C,
                    (long long)fm.wave_tiles[i]);
    }
  }
}

}  // namespace
}  // namespace hlwq

int main(int argc, char** argv) {
  using namespace hlwq;
  try {
    cudaDeviceProp p{};
    HLWQ_CUDA_CHECK(cudaGetDeviceProperties(&p, 0), "device properties");
    cudaStream_t st;
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    const auto ceil = bench::measure_ceilings(st);
    g_copy = ceil.copy_kernel;
    std::printf("device %s, %d SMs, L2 %d MB; copy kernel %.0f GB/s, cudaMemcpy d2d %.0f GB/s (read + write), "
                "read kernel %.0f GB/s\n", p.name, p.multiProcessorCount, p.l2CacheSize >> 20, ceil.copy_kernel,
                ceil.copy_memcpy, ceil.read);
    std::printf("row %-26s | %-22s | %3s | %12s | %12s | %s\n", "kernel", "shape (in->out)", "T", "median", "bandwidth",
                "of copy");
    const size_t l2 = size_t(p.l2CacheSize);
    const std::string only = argc > 1 ? argv[1] : "";
    if (only == "" || only == "gemm") {
      bench_gemm(cuda::PackedFormat::int4, 512, 2048, "2048->512 (expert)", st, l2);
      bench_gemm(cuda::PackedFormat::int4, 2048, 512, "512->2048 (down)", st, l2);
      bench_gemm(cuda::PackedFormat::int4, 8192, 2048, "2048->8192", st, l2);
      bench_gemm(cuda::PackedFormat::int4, 2048, 4096, "4096->2048", st, l2);
      bench_gemm(cuda::PackedFormat::int4, 248320, 2048, "2048->248320 (lm_head)", st, l2);
      bench_gemm(cuda::PackedFormat::bf16, 512, 2048, "2048->512 (expert)", st, l2);
      bench_gemm(cuda::PackedFormat::bf16, 8192, 2048, "2048->8192", st, l2);
      bench_gemm(cuda::PackedFormat::bf16, 248320, 2048, "2048->248320 (lm_head)", st, l2);
    }
    if (only == "" || only == "prefill") {
      const double tc = measure_cuda_ceilings(0).tc_bf16_tflops;
      std::printf("mma.sync bf16 ceiling %.0f TFLOP/s\n", tc);
      bench_prefill_gemm(12288, 2048, "2048->12288 (gdn qkvz)", st, tc);
      bench_prefill_gemm(9216, 2048, "2048->9216 (attn qkv)", st, tc);
      bench_prefill_gemm(2048, 4096, "4096->2048 (out, o)", st, tc);
      bench_prefill_gemm(64, 2048, "2048->64 (gdn ba)", st, tc);
    }
    if (only == "" || only == "moe") bench_moe(st);
    std::printf("ceiling used for %%: copy kernel %.0f GB/s\n", g_copy);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cuda_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}
