// Large-tile INT4 GEMM for prefill (gemm_tiled.cuh). Layouts are gemm.cuh's and weight_pack.h's:
//   weights [n_rt][ku][2][32] uint4 (row tile, k-unit, 64-column half, lane), scales [n_rt][ku][8] float2
//   (rows g, g + 8), activations xfrag [tiles][ku][4][32] uint4 (8-slot tile, k-unit, 32-column chunk, lane).
// Block: 8 warps = 4 along the rows (2 row tiles, 32 rows each) × 2 along the slots (WN 8-slot tiles each), so
// 128 rows × a window of 2·WN tiles. A stage holds one k-unit of the block's weights, scales and activations.
// Grouped launches (MoE experts): the plan groups slots by matrix, so each matrix has one run of tiles, cut into
// items of up to 2·WN tiles from its first tile on; a block computes the items that start in its window, one k loop
// each (an item may reach into the next window). Warps of tiles past an item's end only copy and wait.
#include "backend/cuda/gemm_tiled.cuh"

#include <cuda_bf16.h>
#include <cuda_pipeline.h>

#include <climits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/xfrag.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowTiles = 8;  // 16-row tiles a block
enum Epi : int { kStore = 0, kWeighted = 1, kSwiglu = 2 };

struct TParams {
  const uint4* w = nullptr;  // dense: the matrix's weights and scales (scales as uint4: [n_rt][ku][4])
  const uint4* s = nullptr;
  const uint32_t* const* qarr = nullptr;  // grouped: per-matrix pointers, chosen by tile_mat
  const float* const* sarr = nullptr;
  const int* tile_mat = nullptr;  // grouped: [n_tiles], −1 = unused; null = dense
  const uint4* x = nullptr;       // activations: the tiles' slots, or with x_rows the rows they read
  const int* x_rows = nullptr;    // slot → row of x (−1: zeros); null: slot s is row s
  int ku = 0, n_rt = 0;  // k-units, row tiles of W
  int n_tiles = 0;       // 8-slot tiles: of x (dense), of the plan (grouped)
  int n_slots = 0, out = 0;  // slots and rows that have an output
  float* y = nullptr;
  int64_t ldy = 0;
  const float* slot_w = nullptr;  // weighted
  __nv_bfloat16* h = nullptr;     // swiglu: h as xfrag of h_in_pad columns
  int h_in_pad = 0;
};

// uint4 of one stage: activations (2·WN tiles × 128), weights (8 row tiles × 64), scales (8 row tiles × 4).
template <int WN>
__host__ __device__ constexpr int stage_units() {
  return 2 * WN * 128 + kRowTiles * 64 + kRowTiles * 4;
}
template <int WN, int ST>
constexpr size_t smem_bytes() {
  return size_t(ST) * stage_units<WN>() * sizeof(uint4);
}

template <int WN, int ST, int kEpi>
__global__ void __launch_bounds__(kThreads, WN == 8 ? 1 : 2) gemm_tiled_kernel(TParams p) {
  HLWQ_PDL_PREAMBLE();
  constexpr int kXt = 2 * WN, kB = kXt * 128, kA = kRowTiles * 64, kStage = stage_units<WN>();
  extern __shared__ uint4 sm[];
  __shared__ int s_before;  // grouped: the last tile before the window that is not of its first tile's matrix
  __shared__ int s_mat[2 * kXt];  // the matrices of the window's tiles and of the next kXt (an item's end)
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const int wm = warp & 3, wn = warp >> 2;
  const int xt0 = blockIdx.x * kXt, rt0 = blockIdx.y * kRowTiles, ku = p.ku;  // the window: tiles [xt0, xt0 + kXt)
  // matrix of tile xt0 + t (t < 2·kXt): −1 past the plan or unused; every tile of a dense launch is matrix 0. Read
  // once into shared memory: the loops below would otherwise wait for one L2 load after another.
  if (tid < 2 * kXt) s_mat[tid] = xt0 + tid >= p.n_tiles ? -1 : p.tile_mat ? __ldg(p.tile_mat + xt0 + tid) : 0;
  __syncthreads();
  auto mat = [&](int t) { return s_mat[t]; };

  // Items: each run of one matrix (slots are grouped by matrix) cut into kXt tiles from its first tile on; the block
  // computes the items that start in its window, one after another (an item may end in the next window). pos: the
  // position of tile xt0 + t in its run; for the first, the kThreads tiles before the window are scanned at once.
  // A run that began further back (a matrix with > kThreads tiles: routing that concentrates on a few experts) is cut
  // at this window's edge instead, as if it began here: the items of the window before may then reach into this one,
  // and those tiles are computed twice, with the same bits (every output sums in one order wherever its item starts).
  // Scanning back to the start would cost a round per kThreads tiles in every window of such a run.
  int pos = 0, prev = mat(0);
  if (p.tile_mat && prev >= 0 && xt0 > 0) {
    if (tid == 0) s_before = INT_MIN;
    __syncthreads();
    const int t = xt0 - 1 - tid;
    if (t < 0 || __ldg(p.tile_mat + t) != prev) atomicMax(&s_before, t < 0 ? -1 : t);
    __syncthreads();
    if (s_before != INT_MIN) pos = xt0 - s_before - 1;
  }
  for (int t = 0; t < kXt; ++t) {  // block-uniform
    const int m = mat(t);
    if (t > 0) pos = m == prev ? pos + 1 : 0;
    prev = m;
    if (m < 0 || pos % kXt != 0) continue;
    int run_b = 1;  // the item's tiles: [it0, it0 + run_b), one matrix, at most kXt
    while (run_b < kXt && mat(t + run_b) == m) ++run_b;
    const int it0 = xt0 + t;
    const uint4* W = p.tile_mat ? reinterpret_cast<const uint4*>(p.qarr[m]) : p.w;
    const uint4* Sc = p.tile_mat ? reinterpret_cast<const uint4*>(p.sarr[m]) : p.s;
    float acc[2][WN][4] = {};  // [row tile][8-slot tile][C fragment]
    // this thread's activation copies: unit i = tid + 256·j is (tile i / 128, chunk (i / 32) % 4, lane i % 32); src
    // its offset in x at k-unit 0 (−1: zero-fill), −2: a tile past the block's (not copied, not computed)
    int src[WN];
#pragma unroll
    for (int j = 0; j < WN; ++j) {
      const int i = tid + j * kThreads, tt = i >> 7, l = i & 31;
      if (tt >= run_b) {
        src[j] = -2;
      } else if (p.x_rows) {
        const int r = __ldg(p.x_rows + (it0 + tt) * 8 + (l >> 2));
        src[j] = r < 0 ? -1 : (r >> 3) * ku * 128 + (i & 96) + (r & 7) * 4 + (l & 3);
      } else {
        src[j] = (it0 + tt) * ku * 128 + (i & 127);
      }
    }
    // Copies k-unit u into stage stg. Row tiles past the matrix are zero-filled (nothing read): they compute 0.
    auto issue = [&](int u, int stg) {
      uint4* B = sm + stg * kStage;
      uint4* A = B + kB;
      uint4* S = A + kA;
#pragma unroll
      for (int j = 0; j < WN; ++j)
        if (src[j] != -2)
          __pipeline_memcpy_async(B + tid + j * kThreads, src[j] >= 0 ? p.x + (src[j] + u * 128) : p.x, 16,
                                  src[j] >= 0 ? 0 : 16);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int i = tid + j * kThreads, r = i >> 6;
        const bool ok = rt0 + r < p.n_rt;
        __pipeline_memcpy_async(A + i, ok ? W + ((int64_t(rt0 + r) * ku + u) * 64 + (i & 63)) : W, 16, ok ? 0 : 16);
      }
      if (tid < kRowTiles * 4) {
        const int r = tid >> 2;
        const bool ok = rt0 + r < p.n_rt;
        __pipeline_memcpy_async(S + tid, ok ? Sc + ((int64_t(rt0 + r) * ku + u) * 4 + (tid & 3)) : Sc, 16,
                                ok ? 0 : 16);
      }
    };
    bool live[WN];  // this warp's tiles in the run (warp-uniform)
#pragma unroll
    for (int n = 0; n < WN; ++n) live[n] = wn * WN + n < run_b;

    __syncthreads();  // the previous item's stages are read by everyone before they are refilled
#pragma unroll
    for (int s = 0; s < ST - 1; ++s) {
      if (s < ku) issue(s, s);
      __pipeline_commit();  // one group per stage, empty ones included, so the wait below counts stages
    }
    for (int u = 0; u < ku; ++u) {
      __pipeline_wait_prior(ST - 2);  // this thread's copies of k-unit u have landed
      __syncthreads();                // everyone's have, and everyone is done with the stage refilled next
      if (u + ST - 1 < ku) issue(u + ST - 1, (u + ST - 1) % ST);
      __pipeline_commit();
      const uint4* B = sm + (u % ST) * kStage;
      const uint4* A = B + kB;
      const float2* S = reinterpret_cast<const float2*>(A + kA);
      float part[2][WN][4] = {};  // this k-unit's sums, scaled below (the group's scale is per row and k-unit)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {  // 64-column half: k-steps 4·hh … 4·hh + 3
        uint4 wa[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) wa[r] = A[((wm * 2 + r) * 2 + hh) * 32 + lane];
#pragma unroll
        for (int jp = 0; jp < 2; ++jp) {  // 32-column chunk 2·hh + jp: two k-steps
          uint4 xb[WN];
#pragma unroll
          for (int n = 0; n < WN; ++n)
            if (live[n]) xb[n] = B[((wn * WN + n) * 4 + hh * 2 + jp) * 32 + lane];
#pragma unroll
          for (int h2 = 0; h2 < 2; ++h2) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              const uint32_t w = (&wa[r].x)[jp * 2 + h2];
              uint32_t a[4];
              dq8(w, a);
#pragma unroll
              for (int n = 0; n < WN; ++n)
                if (live[n]) mma_bf16(part[r][n], a[0], a[1], a[2], a[3], h2 ? xb[n].z : xb[n].x, h2 ? xb[n].w : xb[n].y);
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float2 sc = S[(wm * 2 + r) * 8 + g];
#pragma unroll
        for (int n = 0; n < WN; ++n)
          if (live[n]) {
            acc[r][n][0] += part[r][n][0] * sc.x;
            acc[r][n][1] += part[r][n][1] * sc.x;
            acc[r][n][2] += part[r][n][2] * sc.y;
            acc[r][n][3] += part[r][n][3] * sc.y;
          }
      }
    }

    // C fragment: acc[r][n][i] is row g + 8·(i/2) of row tile rt0 + 2·wm + r, slot 2c + i%2 of item tile wn·WN + n
#pragma unroll
    for (int n = 0; n < WN; ++n) {
      if (wn * WN + n >= run_b) continue;  // not the item's (unused tiles are not written, as in gemm.cu)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int slot = (it0 + wn * WN + n) * 8 + 2 * c + (i & 1);
        if constexpr (kEpi == kSwiglu) {  // row tiles 2f', 2f' + 1 are the gate and up tiles of features 16f' …
          if (rt0 + wm * 2 >= p.n_rt) continue;
          const int f = (rt0 / 2 + wm) * 16 + g + 8 * (i >> 1);
          p.h[xfrag_elem(slot, f, p.h_in_pad)] = __float2bfloat16_rn(silu_f(acc[0][n][i]) * acc[1][n][i]);
        } else {
          if (slot >= p.n_slots) continue;
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int row = (rt0 + wm * 2 + r) * 16 + g + 8 * (i >> 1);
            if (row >= p.out) continue;
            float v = acc[r][n][i];
            if constexpr (kEpi == kWeighted) v *= p.slot_w[slot];
            p.y[int64_t(slot) * p.ldy + row] = v;
          }
        }
      }
    }
  }
}

struct DeviceShape {
  int sms = 0, optin = 0;  // SMs, shared memory a block may opt in to
};
DeviceShape device_shape() {
  DeviceShape d;
  int dev = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "tiled gemm: device");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&d.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "tiled gemm: opt-in");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev), "tiled gemm: SM count");
  return d;
}

// Blocks of a grid over out_pad rows and `tiles` 8-slot tiles, windows of `window` tiles.
int64_t blocks(int64_t out_pad, int64_t tiles, int64_t window) {
  return (out_pad / 16 + kRowTiles - 1) / kRowTiles * ((tiles + window - 1) / window);
}

// Measured on the H200 (bench/cuda/NOTES.md, sixteenth session): the 4096 → 2048 matrix at 128 tokens (32 blocks)
// took 44 µs here against 23 on the fragment kernel, at 512 tokens (128 blocks) 44 against 93. A block's k loop is
// the floor of the launch, so a grid that leaves most SMs idle is slower than the fragment kernel's split of k.
bool pays(int64_t out_pad, int64_t tiles) { return 2 * blocks(out_pad, tiles, 8) >= device_shape().sms; }

template <int WN, int ST, int kEpi>
void launch_ws(const TParams& p, cudaStream_t st) {
  auto kern = gemm_tiled_kernel<WN, ST, kEpi>;
  constexpr size_t smem = smem_bytes<WN, ST>();
  HLWQ_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                  "tiled gemm: {} bytes of shared memory", smem);
  const dim3 grid(unsigned((p.n_tiles + 2 * WN - 1) / (2 * WN)), unsigned((p.n_rt + kRowTiles - 1) / kRowTiles));
  kern<<<grid, kThreads, smem, st>>>(p);
  HLWQ_CUDA_LAUNCH_CHECK("tiled gemm {}x{} {} tiles grid {}x{}", p.out, p.ku * 128, p.n_tiles, grid.x, grid.y);
}

// Dense launches take windows of 16 tiles where the grid over the activations' tiles still covers every SM and the
// three stages fit (Hopper's 227 KB; consumer Ampere/Ada/Blackwell cards opt in to 99 KB), else 8 (two blocks an
// SM). Grouped launches always take 8: at 4,096 tokens (~19 tiles an expert) 16 made the experts' layer 1,861 us
// against 1,418 (gate_up 1,086 against 853, down with its 4 k-units 774 against 567) and a 4,096-token prefill's MoE
// blocks 92.7 against 69.5 ms (H200, bench/cuda/NOTES.md seventeenth session): one block an SM waits out each item's
// pipeline fill alone, where two overlap one's fill with the other's MMAs. Either size sums every output in the same
// order, so the choice changes no result.
void launch_dense(const TParams& p, int64_t out_pad, cudaStream_t st) {
  const DeviceShape d = device_shape();
  if (size_t(d.optin) >= smem_bytes<8, 3>() && blocks(out_pad, p.n_tiles, 16) >= d.sms)
    launch_ws<8, 3, kStore>(p, st);
  else
    launch_ws<4, 3, kStore>(p, st);
}

}  // namespace

bool gemm_tiled_pays(const PackedLinear& w, int64_t T) {
  return w.format == PackedFormat::int4 && T >= kTiledGemmMinTokens && pays(w.out_pad, (T + 7) / 8);
}

bool gemm_grouped_tiled_pays(const GroupedLinear& w, int64_t plan_tiles) {
  return w.format == PackedFormat::int4 && plan_tiles * 8 >= kTiledGemmMinTokens && plan_tiles >= 3 * w.n &&
         pays(w.out_pad, plan_tiles);
}

void gemm_tiled_int4(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st) {
  HLWQ_CHECK(w.format == PackedFormat::int4 && w.out_pad % 16 == 0 && w.in_pad % 128 == 0,
             "tiled gemm: an INT4 matrix [{}, {}] padded to [{}, {}]", w.out, w.in, w.out_pad, w.in_pad);
  HLWQ_CHECK(T >= 1 && xfrag_words(T, w.in_pad) / 4 < (int64_t(1) << 31) && (reinterpret_cast<uintptr_t>(xfrag) & 15) == 0,
             "tiled gemm: {} tokens of {} columns, activations at {}", T, w.in_pad, static_cast<const void*>(xfrag));
  TParams p;
  p.w = reinterpret_cast<const uint4*>(w.q.get());
  p.s = reinterpret_cast<const uint4*>(w.scale.get());
  p.x = reinterpret_cast<const uint4*>(xfrag);
  p.ku = int(w.in_pad / 128);
  p.n_rt = int(w.out_pad / 16);
  p.n_tiles = int(xfrag_words(T, w.in_pad) / xfrag_tile_words(w.in_pad));  // the buffer's 8-slot tiles
  p.n_slots = int(T);
  p.out = int(w.out);
  p.y = y;
  p.ldy = ldy;
  launch_dense(p, w.out_pad, st);
}

void gemm_grouped_tiled_int4(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                             int64_t max_tiles, uint32_t* h_xfrag, int64_t h_in_pad, float* y, int64_t ldy,
                             const float* slot_w, cudaStream_t st, int64_t /*launch_tiles*/, const int* x_rows) {
  HLWQ_CHECK(w.format == PackedFormat::int4 && w.out_pad % 32 == 0 && w.in_pad % 128 == 0 && tile_mat,
             "tiled grouped gemm: INT4 matrices [{}, {}] padded to [{}, {}] and a plan", w.out, w.in, w.out_pad,
             w.in_pad);
  // activation offsets are 32-bit: a plan's slots (and so the rows they read, tokens of the batch) fit
  HLWQ_CHECK(max_tiles >= 1 && max_tiles * xfrag_tile_words(w.in_pad) / 4 < (int64_t(1) << 31) &&
                 (reinterpret_cast<uintptr_t>(xfrag) & 15) == 0,
             "tiled grouped gemm: {} tiles of {} columns, activations at {}", max_tiles, w.in_pad,
             static_cast<const void*>(xfrag));
  TParams p;
  p.qarr = w.q.get();
  p.sarr = w.scale.get();
  p.tile_mat = tile_mat;
  p.x = reinterpret_cast<const uint4*>(xfrag);
  p.x_rows = x_rows;
  p.ku = int(w.in_pad / 128);
  p.n_rt = int(w.out_pad / 16);
  p.n_tiles = int(max_tiles);
  p.n_slots = int(max_tiles * 8);
  p.out = int(w.out);
  p.y = y;
  p.ldy = ldy;
  p.slot_w = slot_w;
  p.h = reinterpret_cast<__nv_bfloat16*>(h_xfrag);
  p.h_in_pad = int(h_in_pad);
  switch (epi) {
    case GroupedEpilogue::swiglu:
      HLWQ_CHECK(h_xfrag && w.out % 2 == 0 && (w.out / 2 + 15) / 16 * 16 <= h_in_pad,
                 "tiled grouped gemm swiglu: {} gate_up rows, h columns {}", w.out, h_in_pad);
      return launch_ws<4, 3, kSwiglu>(p, st);
    case GroupedEpilogue::weighted:
      HLWQ_CHECK(y && slot_w && !x_rows, "tiled grouped gemm weighted: output, weights, activations by slot");
      return launch_ws<4, 3, kWeighted>(p, st);
    case GroupedEpilogue::swiglu_f32:
      break;
  }
  fail("tiled grouped gemm: fp32 SwiGLU output is for HLWQ experts only");
}

}  // namespace hlwq::cuda
