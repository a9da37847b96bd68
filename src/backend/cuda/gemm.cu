// Tensor-core GEMM over fragment-ordered weights (see gemm.cuh, weight_pack.h).
// Block: 8 warps over one token tile (8·NT slots) and a grid-stride sequence of row groups (below). INT4 weights
// are widened exactly (dq8, mma.cuh); the group's scale multiplies the fp32 partial sum of its 128 columns, so the
// only rounding besides fp32 accumulation is bf16 activations.
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemm_launch.h"
#include "backend/cuda/gemm_tiled.cuh"
#include "backend/cuda/hlwq_gemm.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/xfrag.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kWarps = kGemmWarps;
// Weight loads in flight per lane (uint4) and blocks per SM the registers must allow. The standard kernel keeps 16 in
// flight at 2 blocks per SM (≤ 128 registers a thread). The light one, for the grouped expert launches of a few
// tokens, keeps 8 at 3 blocks per SM (≤ 85 registers): at one token the experts' GEMMs are bound by the latency of
// the dequantization and MMA chain of too few warps (ncu: 2.2 active warps per scheduler, 0.24 instructions issued
// per cycle), and more, lighter warps hide it (bench/cuda/NOTES.md, eighth session).
constexpr int kInFlight = 16, kMinBlocks = 2;
constexpr int kLightInFlight = 8, kLightMinBlocks = 3;
enum Epi : int { kStore = 0, kWeighted = 1, kSwiglu = 2 };

struct KParams {
  const uint32_t* q0;  // dense mode: the matrix
  const float* s0;
  const uint32_t* const* qarr;  // grouped mode: per-matrix pointers, chosen by tile_mat
  const float* const* sarr;
  const int* tile_mat;  // grouped: [gridDim.y]; null = dense
  int ku;               // in_pad / 128
  const uint32_t* x;    // xfrag: the tiles' slots, or with x_rows the rows (tokens) they read
  const int* x_rows;    // grouped: slot → row of x (−1: zeros), so the experts read the tokens' fragments; null: none
  int n_slots;          // slots that have an output row
  int out;              // valid output rows of W (swiglu: features of h = out / 2)
  float* y;
  int64_t ldy;
  const float* slot_w;
  __nv_bfloat16* h;  // swiglu output xfrag, viewed as bf16
  int h_in_pad;
  int n_groups;  // row groups of the matrix (set by launch)
  int split;     // warps per group (set by launch)
  int x_smem;    // activations staged in shared memory (set by launch)
};

// A "group" is RT row tiles (2 for SwiGLU: a gate tile and its up tile side by side). S warps of a block share one
// group and split its k-units (S = 8, 4, 2 or 1, chosen per launch so the grid holds enough warps); the block's
// 8 / S groups advance together over the matrix (a persistent grid-stride loop). Each warp first issues the
// weight loads of up to kU of its k-units (16 uint4 per lane in flight), then computes them. Activations come
// from shared memory when S < 8 (staged once per block: each warp then reads all of them for every group) and
// straight from L2 otherwise (each warp reads only its k-units once).
template <bool kInt4, int NT, int RT, int kEpi, int kFlight, int kMinB>
__global__ void __launch_bounds__(kWarps * 32, kMinB) gemm_kernel(KParams p) {
  HLWQ_PDL_PREAMBLE();
  constexpr int kWpu = kInt4 ? 2 : 8;  // uint4 per lane per row tile per k-unit
  constexpr int kU = kFlight / (kWpu * RT) > 0 ? kFlight / (kWpu * RT) : 1;  // k-units in flight per warp
  extern __shared__ uint4 xs[];                                       // [NT·ku·128] staged activations
  __shared__ float red[kWarps][RT * NT * 4][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int by = blockIdx.y;
  const uint32_t* q = p.q0;
  const float* s = p.s0;
  if (p.tile_mat) {
    const int m = p.tile_mat[by];
    if (m < 0) return;  // whole block leaves together: no barrier is skipped by part of it
    q = p.qarr[m];
    if (kInt4) s = p.sarr[m];
  }
  const int ku = p.ku, S = p.split, G = kWarps / S, ks = warp % S, gl = warp / S;
  // Only the experts' gate_up (SwiGLU) reads its activations through x_rows: lane (g, c) of tile nt reads row
  // r = x_rows[slot 8·(by·NT + nt) + g] of x, whose fragment word sits where lane (r % 8, c) of x's tile r / 8 holds
  // it. xo: the lane's offset from X in uint4 for k-unit 0, −1 for a zero row (without x_rows: its own tile's).
  constexpr bool kRows = kEpi == kSwiglu;
  const bool rows = kRows && p.x_rows;
  const uint4* X = reinterpret_cast<const uint4*>(p.x) + (rows ? 0 : int64_t(by) * NT * ku * 4 * 32);
  int xo[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int r = rows ? p.x_rows[(by * NT + nt) * 8 + g] : 0;
    xo[nt] = !rows ? nt * ku * 128 + lane : r >= 0 ? (r >> 3) * ku * 128 + (r & 7) * 4 + c : -1;
  }
  if (p.x_smem) {
    for (int i = threadIdx.x; i < NT * ku * 128; i += blockDim.x) {
      if (rows) {
        const int nt = i / (ku * 128), rem = i - nt * ku * 128, l = rem & 31;
        const int r = p.x_rows[(by * NT + nt) * 8 + (l >> 2)];
        xs[i] = r >= 0 ? __ldg(X + ((r >> 3) * ku * 128 + (rem - l) + (r & 7) * 4 + (l & 3))) : make_uint4(0, 0, 0, 0);
      } else {
        xs[i] = __ldg(X + i);
      }
    }
    __syncthreads();
    X = xs;
  }
  const uint4* W = reinterpret_cast<const uint4*>(q);

  for (int base = blockIdx.x * G; base < p.n_groups; base += gridDim.x * G) {
    const int grp = base + gl;
    const bool live = grp < p.n_groups;
    float acc[RT][NT][4] = {};
    if (live) {
      for (int u0 = ks; u0 < ku; u0 += S * kU) {
        uint4 wa[kU][RT][kWpu];
        float2 sc[kU][RT];
#pragma unroll
        for (int j = 0; j < kU; ++j) {
          const int u = u0 + j * S;
          if (u >= ku) break;
#pragma unroll
          for (int r = 0; r < RT; ++r) {
            const int64_t rt = int64_t(RT) * grp + r;
#pragma unroll
            for (int hh = 0; hh < kWpu; ++hh) wa[j][r][hh] = __ldg(W + ((rt * kWpu * ku + kWpu * u + hh) * 32 + lane));
            if constexpr (kInt4) sc[j][r] = __ldg(reinterpret_cast<const float2*>(s) + ((rt * ku + u) * 8 + g));
          }
        }
#pragma unroll
        for (int j = 0; j < kU; ++j) {
          const int u = u0 + j * S;
          if (u >= ku) break;
          uint4 xa[NT][4];  // [n8 tile][step pair] this unit's B fragments
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) {
              const int64_t xi = int64_t(nt) * ku * 128 + (u * 4 + jj) * 32 + lane;
              if (p.x_smem) xa[nt][jj] = X[xi];
              else if constexpr (!kRows) xa[nt][jj] = __ldg(X + xi);  // the read-only path when X is global
              else xa[nt][jj] = xo[nt] >= 0 ? __ldg(X + (xo[nt] + (u * 4 + jj) * 32)) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
          for (int r = 0; r < RT; ++r) {
            if constexpr (kInt4) {
              float part[NT][4] = {};
#pragma unroll
              for (int hh = 0; hh < 2; ++hh)
#pragma unroll
                for (int jj = 0; jj < 4; ++jj) {
                  const uint32_t w = (&wa[j][r][hh].x)[jj];
                  uint32_t a[4];
                  dq8(w, a);
                  const int st = hh * 4 + jj;
#pragma unroll
                  for (int nt = 0; nt < NT; ++nt) {
                    const uint4& b = xa[nt][st >> 1];
                    if (st & 1) mma_bf16(part[nt], a[0], a[1], a[2], a[3], b.z, b.w);
                    else mma_bf16(part[nt], a[0], a[1], a[2], a[3], b.x, b.y);
                  }
                }
#pragma unroll
              for (int nt = 0; nt < NT; ++nt) {
                acc[r][nt][0] += part[nt][0] * sc[j][r].x;
                acc[r][nt][1] += part[nt][1] * sc[j][r].x;
                acc[r][nt][2] += part[nt][2] * sc[j][r].y;
                acc[r][nt][3] += part[nt][3] * sc[j][r].y;
              }
            } else {
#pragma unroll
              for (int st = 0; st < 8; ++st)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                  const uint4& b = xa[nt][st >> 1];
                  const uint4& a = wa[j][r][st];
                  if (st & 1) mma_bf16(acc[r][nt], a.x, a.y, a.z, a.w, b.z, b.w);
                  else mma_bf16(acc[r][nt], a.x, a.y, a.z, a.w, b.x, b.y);
                }
            }
          }
        }
      }
    }

    float* a = &acc[0][0][0];
    if (S > 1) {  // split-k reduction: the S warps of a group hand their sums to its first warp (S is block-uniform)
#pragma unroll
      for (int i = 0; i < RT * NT * 4; ++i) red[warp][i][lane] = a[i];
      __syncthreads();
      if (ks == 0)
#pragma unroll
        for (int i = 0; i < RT * NT * 4; ++i)
          for (int w = 1; w < S; ++w) a[i] += red[warp + w][i][lane];
      __syncthreads();  // red is written again by the next iteration
    }
    if (!live || ks != 0) continue;

    // C fragment: acc[r][nt][i] is (row tile RT·grp+r, row g + 8·(i/2)), slot 8·(by·NT+nt) + 2c + i%2
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t slot = int64_t(by * NT + nt) * 8 + 2 * c + (i & 1);
        if constexpr (kEpi == kSwiglu) {
          static_assert(RT == 2, "SwiGLU pairs a gate tile with an up tile");
          const int64_t f = int64_t(grp) * 16 + g + 8 * (i >> 1);
          const float hv = silu_f(acc[0][nt][i]) * acc[RT - 1][nt][i];
          p.h[xfrag_elem(slot, f, p.h_in_pad)] = __float2bfloat16_rn(hv);
        } else {
          if (slot >= p.n_slots) continue;
#pragma unroll
          for (int r = 0; r < RT; ++r) {
            const int64_t row = int64_t(RT * grp + r) * 16 + g + 8 * (i >> 1);
            if (row >= p.out) continue;
            float v = acc[r][nt][i];
            if constexpr (kEpi == kWeighted) v *= p.slot_w[slot];
            p.y[slot * p.ldy + row] = v;
          }
        }
      }
  }
}

// Launches the kernel with its split and grid (gemm_launch.h: one wave of blocks where one exists, as a decode GEMV
// needs). one_wave_only: launch only if the shape is one wave; returns whether it launched.
template <bool kInt4, int NT, int RT, int kEpi, int kFlight = kInFlight, int kMinB = kMinBlocks>
bool launch_rt(KParams kp, int64_t out_pad, int64_t tiles, int64_t config_tiles, cudaStream_t st, const char* what,
               bool one_wave_only = false) {
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "{} gemm: SM count", what);
  constexpr int kWpu = kInt4 ? 2 : 8, kU = kFlight / (kWpu * RT) > 0 ? kFlight / (kWpu * RT) : 1;
  auto kern = gemm_kernel<kInt4, NT, RT, kEpi, kFlight, kMinB>;
  const size_t xbytes = size_t(NT) * size_t(kp.ku) * 128 * sizeof(uint4);
  const GemmLaunchShape shape =
      gemm_launch_shape_for(kern, GemmLaunchProblem{out_pad / (16 * RT), kp.ku, kU, config_tiles, sms, xbytes}, what);
  if (one_wave_only && !shape.one_wave) return false;
  kp.n_groups = int(out_pad / (16 * RT));
  kp.split = shape.split;
  kp.x_smem = shape.x_smem;
  const size_t smem = kp.x_smem ? xbytes : 0;
  if (smem > (size_t(48) << 10))
    HLWQ_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                    "{} gemm: {} bytes of shared memory", what, smem);
  const dim3 grid(unsigned(shape.blocks), unsigned(tiles));
  kern<<<grid, kWarps * 32, smem, st>>>(kp);
  HLWQ_CUDA_LAUNCH_CHECK("{} gemm grid {}x{} split {}", what, grid.x, grid.y, kp.split);
  return true;
}

// The grouped expert launches (one token tile per expert): the light kernel where it runs in one wave (a few tokens),
// else the standard one.
template <bool kInt4, int kEpi>
void launch_grouped(const KParams& kp, int64_t out_pad, int64_t tiles, int64_t config_tiles, cudaStream_t st,
                    const char* what) {
  constexpr int RT = kEpi == kSwiglu ? 2 : 1;
  // BF16 gate_up keeps as many loads in flight in both kernels (one k-unit of two row tiles), so the light one would
  // only have fewer registers (it spills): the standard kernel serves it
  if constexpr (kInt4 || RT == 1)
    if (launch_rt<kInt4, 1, RT, kEpi, kLightInFlight, kLightMinBlocks>(kp, out_pad, tiles, config_tiles, st, what, true))
      return;
  launch_rt<kInt4, 1, RT, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
}

// Dense matrices: RT = 2 for tall ones at ≤ 8 tokens (the lm_head: two row tiles share each activation load, halving
// the activation traffic); 1 otherwise (more blocks for short ones; NT = 2 with RT = 2 would spill registers). INT4
// at ≤ 8 tokens takes the light kernel where it runs in one wave, as the experts do: three blocks an SM of half the
// loads each spread a mixer's projection evenly (qkvz: 384 blocks for 396 places, where the standard kernel's 192
// blocks put two on 60 SMs and one on the rest).
template <bool kInt4, int NT>
void launch_dense(const KParams& kp, int64_t out_pad, int64_t tiles, cudaStream_t st, const char* what) {
  if constexpr (NT == 1) {
    if (out_pad / 16 >= 4096) {
      launch_rt<kInt4, NT, 2, kStore>(kp, out_pad, tiles, tiles, st, what);
      return;
    }
    if constexpr (kInt4)
      if (launch_rt<kInt4, NT, 1, kStore, kLightInFlight, kLightMinBlocks>(kp, out_pad, tiles, tiles, st, what, true))
        return;
  }
  launch_rt<kInt4, NT, 1, kStore>(kp, out_pad, tiles, tiles, st, what);
}

__global__ void pack_kernel(const float* __restrict__ x, int64_t ldx, int64_t n_rows, int64_t in,
                            const int* __restrict__ slot_tok, int64_t n_slots, int in_pad, uint32_t* __restrict__ out) {
  HLWQ_PDL_PREAMBLE();
  const int64_t pairs = in_pad / 2, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_slots * pairs) return;
  const int64_t slot = i / pairs, k = (i % pairs) * 2;
  const int64_t row = slot_tok ? slot_tok[slot] : slot;
  float v0 = 0.f, v1 = 0.f;
  if (row >= 0 && row < n_rows) {
    if (k < in) v0 = x[row * ldx + k];
    if (k + 1 < in) v1 = x[row * ldx + k + 1];
  }
  __nv_bfloat162 h = __floats2bfloat162_rn(v0, v1);
  out[xfrag_elem(slot, k, in_pad) / 2] = *reinterpret_cast<uint32_t*>(&h);
}

}  // namespace

PackedLinear upload_packed(const PackedLinearHost& h, const char* what) {
  PackedLinear d;
  d.format = h.format;
  d.out = h.out;
  d.in = h.in;
  d.out_pad = h.out_pad;
  d.in_pad = h.in_pad;
  d.q = DeviceBuffer<uint32_t>(h.q, std::string(what) + " weights");
  d.scale = DeviceBuffer<float>(h.scale, std::string(what) + " scales");
  d.bits = h.bits;
  d.codebook = h.codebook;
  d.codebook_dev = DeviceBuffer<float>(h.codebook, std::string(what) + " codebook");
  return d;
}

void pack_activations(const float* x, int64_t ldx, int64_t n_rows, int64_t in, const int* slot_tok, int64_t n_slots,
                      int64_t in_pad, uint32_t* xfrag, cudaStream_t st) {
  HLWQ_CHECK(in_pad % 128 == 0 && in <= in_pad, "pack_activations: in {} in_pad {}", in, in_pad);
  const int64_t slots = (n_slots + 15) / 16 * 16;  // the 16-slot tiles of gemm() read whole tiles
  const int64_t n = slots * in_pad / 2;
  if (n == 0) return;
  pack_kernel<<<unsigned((n + 255) / 256), 256, 0, st>>>(x, ldx, n_rows, in, slot_tok, slots, int(in_pad), xfrag);
  HLWQ_CUDA_LAUNCH_CHECK("pack_activations {} slots x {}", slots, in);
}

void gemm(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st) {
  if (T == 0) return;
  if (w.format == PackedFormat::hlwq) return hlwq_gemm(w, xfrag, T, y, ldy, st);
  if (gemm_tiled_pays(w, T)) return gemm_tiled_int4(w, xfrag, T, y, ldy, st);
  gemm_fragment(w, xfrag, T, y, ldy, st);
}

void gemm_fragment(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st) {
  if (T == 0) return;
  HLWQ_CHECK(w.format != PackedFormat::hlwq, "gemm_fragment: HLWQ matrices run hlwq_gemm");
  KParams kp{};
  kp.q0 = w.q.get();
  kp.s0 = w.scale.get();
  kp.ku = int(w.in_pad / 128);
  kp.x = xfrag;
  kp.n_slots = int(T);
  kp.out = int(w.out);
  kp.y = y;
  kp.ldy = ldy;
  const bool i4 = w.format == PackedFormat::int4;
  if (T <= 8) {
    if (i4) launch_dense<true, 1>(kp, w.out_pad, 1, st, "int4");
    else launch_dense<false, 1>(kp, w.out_pad, 1, st, "bf16");
  } else {
    const int64_t tiles = (T + 15) / 16;
    if (i4) launch_dense<true, 2>(kp, w.out_pad, tiles, st, "int4");
    else launch_dense<false, 2>(kp, w.out_pad, tiles, st, "bf16");
  }
}

GroupedLinear make_grouped_ptrs(PackedFormat f, int64_t out, int64_t in, int64_t out_pad, int64_t in_pad,
                                const std::vector<const uint32_t*>& q, const std::vector<const float*>& scale,
                                const char* what, int bits, const std::vector<float>& codebook) {
  HLWQ_CHECK(!q.empty() && q.size() == scale.size(), "{}: {} weight and {} scale pointers", what, q.size(),
             scale.size());
  HLWQ_CHECK(f != PackedFormat::hlwq || (bits >= 2 && bits <= 8 && codebook.size() == (size_t(1) << bits)),
             "{}: HLWQ matrices need their width (got {}) and a codebook of 2^bits values (got {})", what, bits,
             codebook.size());
  GroupedLinear g;
  g.format = f;
  g.out = out;
  g.in = in;
  g.out_pad = out_pad;
  g.in_pad = in_pad;
  g.n = int64_t(q.size());
  g.q = DeviceBuffer<const uint32_t*>(q, std::string(what) + " pointers");
  g.scale = DeviceBuffer<const float*>(scale, std::string(what) + " scale pointers");
  if (f == PackedFormat::hlwq) {
    g.bits = bits;
    g.codebook = DeviceBuffer<float>(codebook, std::string(what) + " codebook");
  }
  return g;
}

GroupedLinear make_grouped(const std::vector<const PackedLinear*>& mats, const char* what) {
  HLWQ_CHECK(!mats.empty(), "{}: no matrices", what);
  const PackedLinear& m0 = *mats[0];
  std::vector<const uint32_t*> qp;
  std::vector<const float*> sp;
  for (const PackedLinear* m : mats) {
    HLWQ_CHECK(m->format == m0.format && m->out == m0.out && m->in == m0.in, "{}: matrix [{}, {}] differs from [{}, {}]",
               what, m->out, m->in, m0.out, m0.in);
    HLWQ_CHECK(m->bits == m0.bits && m->codebook == m0.codebook, "{}: HLWQ matrices with different codebooks", what);
    qp.push_back(m->q.get());
    sp.push_back(m->scale.get());
  }
  return make_grouped_ptrs(m0.format, m0.out, m0.in, m0.out_pad, m0.in_pad, qp, sp, what, m0.bits, m0.codebook);
}

void gemm_grouped(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                  int64_t max_tiles, uint32_t* h_xfrag, int64_t h_in_pad, float* y, int64_t ldy, const float* slot_w,
                  cudaStream_t st, int64_t launch_tiles, const int* x_rows) {
  if (max_tiles == 0) return;
  HLWQ_CHECK(!x_rows || (w.format != PackedFormat::hlwq && epi == GroupedEpilogue::swiglu),
             "gemm_grouped: activations by row are for INT4 or BF16 gate_up matrices");
  if (w.format == PackedFormat::hlwq)
    return hlwq_gemm_grouped(w, epi, xfrag, tile_mat, max_tiles, y, ldy, slot_w, st, launch_tiles);
  const int64_t cfg = launch_tiles > 0 ? launch_tiles : max_tiles;
  if (epi != GroupedEpilogue::swiglu_f32 && gemm_grouped_tiled_pays(w, cfg))
    return gemm_grouped_tiled_int4(w, epi, xfrag, tile_mat, max_tiles, h_xfrag, h_in_pad, y, ldy, slot_w, st, cfg,
                                   x_rows);
  gemm_grouped_fragment(w, epi, xfrag, tile_mat, max_tiles, h_xfrag, h_in_pad, y, ldy, slot_w, st, launch_tiles,
                        x_rows);
}

void gemm_grouped_fragment(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                           int64_t max_tiles, uint32_t* h_xfrag, int64_t h_in_pad, float* y, int64_t ldy,
                           const float* slot_w, cudaStream_t st, int64_t launch_tiles, const int* x_rows) {
  if (max_tiles == 0) return;
  HLWQ_CHECK(w.format != PackedFormat::hlwq, "gemm_grouped_fragment: HLWQ matrices run hlwq_gemm_grouped");
  const int64_t cfg = launch_tiles > 0 ? launch_tiles : max_tiles;
  KParams kp{};
  kp.qarr = w.q.get();
  kp.sarr = w.scale.get();
  kp.tile_mat = tile_mat;
  kp.ku = int(w.in_pad / 128);
  kp.x = xfrag;
  kp.x_rows = x_rows;
  kp.n_slots = int(max_tiles * 8);
  kp.out = int(w.out);
  kp.y = y;
  kp.ldy = ldy;
  kp.slot_w = slot_w;
  kp.h = reinterpret_cast<__nv_bfloat16*>(h_xfrag);
  kp.h_in_pad = int(h_in_pad);
  const bool i4 = w.format == PackedFormat::int4;
  HLWQ_CHECK(epi != GroupedEpilogue::swiglu_f32, "gemm_grouped: fp32 SwiGLU output is for HLWQ experts only");
  if (epi == GroupedEpilogue::swiglu) {
    HLWQ_CHECK(h_xfrag && w.out % 2 == 0 && (w.out / 2 + 15) / 16 * 16 <= h_in_pad,
               "gemm_grouped swiglu: {} gate_up rows, h columns {}", w.out, h_in_pad);
    if (i4) launch_grouped<true, kSwiglu>(kp, w.out_pad, max_tiles, cfg, st, "int4 gate_up");
    else launch_grouped<false, kSwiglu>(kp, w.out_pad, max_tiles, cfg, st, "bf16 gate_up");
  } else {
    HLWQ_CHECK(y && slot_w, "gemm_grouped weighted: null output or weights");
    if (i4) launch_grouped<true, kWeighted>(kp, w.out_pad, max_tiles, cfg, st, "int4 down");
    else launch_grouped<false, kWeighted>(kp, w.out_pad, max_tiles, cfg, st, "bf16 down");
  }
}

}  // namespace hlwq::cuda
