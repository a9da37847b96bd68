// HLWQ GEMM and activation rotation (see hlwq_gemm.cuh). The GEMM mirrors gemm.cu's kernel (block of 8 warps over
// one token tile and a grid-stride sequence of row groups, split-k across the warps of a group, weight loads of
// several k-units in flight before their math); only the weight words per k-unit (2B u32 instead of INT4's 8) and
// the dequantization (table lookup instead of the nibble trick) differ.
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/gemm_launch.h"
#include "backend/cuda/hlwq_gemm.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/xfrag.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kWarps = kGemmWarps;
constexpr int kInFlightWords = 64;  // u32 of weights per lane in flight (as gemm.cu's 16 uint4)
constexpr int kMinBlocks = 2;
enum Epi : int { kStore = 0, kWeighted = 1, kSwigluF32 = 2 };

// k-units whose weights a warp loads before computing them: ≈ kInFlightWords per lane, at most 8 (as INT4; more
// only adds scale registers and spills at narrow widths).
template <int B, int RT>
constexpr int kUnits = kInFlightWords / (2 * B * RT) < 1   ? 1
                       : kInFlightWords / (2 * B * RT) > 8 ? 8
                                                           : kInFlightWords / (2 * B * RT);

// Lookup table entries: B ≤ 5 pairs (index = code_lo | code_hi << B → bf16 pair), else single codes. Each centroid
// c is held as two bf16 values, hi = bf16(c) and lo = bf16(c − hi), and each k-step runs two MMAs (hi, then lo, into
// the same accumulator): the products see c to ~2⁻¹⁷ instead of bf16's 2⁻⁹. Why: the Lloyd-Max values are not
// bf16 numbers (INT4's are), and a bf16 table moves every weight of a code by the same relative step; on the trained
// demo model that alone gave KL 0.0024 and 1.1 % top-1 flips against the exact codebook (CPU, 4 bits) — the size of
// the whole GPU-vs-CPU budget. Decode is bound by weight bytes, so the second MMA is nearly free there.
template <int B>
constexpr int kTab = B <= 5 ? 1 << (2 * B) : 1 << B;

struct KParams {
  const uint32_t* q0;  // dense mode: the matrix
  const float* s0;
  const uint32_t* const* qarr;  // grouped mode: per-matrix pointers, chosen by tile_mat
  const float* const* sarr;
  const int* tile_mat;    // grouped: [gridDim.y]; null = dense
  const float* codebook;  // [2^B]
  int ku;                 // in_pad / 128
  const uint32_t* x;      // xfrag (rotated)
  int n_slots;
  int out;
  float* y;
  int64_t ldy;
  const float* slot_w;
  int n_groups;  // set by launch
  int split;     // set by launch
  int x_smem;    // set by launch
};

__device__ __forceinline__ float bf16_round(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

__device__ __forceinline__ uint32_t bf16_bits(float v) {
  const __nv_bfloat16 h = __float2bfloat16_rn(v);
  return uint32_t(*reinterpret_cast<const uint16_t*>(&h));
}

// The 2B-bit field of pair p (k-step p/4, register p%4) in a lane's 2B words of one k-unit (weight_pack.h). p is a
// compile-time constant after unrolling, so w[] stays in registers.
template <int B>
__device__ __forceinline__ uint32_t a_field(const uint32_t (&w)[2 * B], int p) {
  const int bit = p * 2 * B, wd = bit >> 5, sh = bit & 31;
  return (sh + 2 * B <= 32 ? w[wd] >> sh : __funnelshift_r(w[wd], w[wd + 1 < 2 * B ? wd + 1 : wd], sh)) &
         ((1u << (2 * B)) - 1);
}

// The A registers (bf16 pairs) of field v: .x from the centroids' hi parts, .y from their lo parts — one 8-byte
// shared-memory load per register for B ≤ 5.
template <int B>
__device__ __forceinline__ uint2 a_reg(uint32_t v, const uint2* tab) {
  if constexpr (B <= 5) {
    return tab[v];
  } else {
    const uint2 a = tab[v & ((1u << B) - 1)], b = tab[v >> B];
    return make_uint2(a.x | (b.x << 16), a.y | (b.y << 16));
  }
}

// Sylvester FWHT (unscaled) of 128 values held 4 per lane: element 4·lane + t in v[t]. Index bits 0–1 are t
// (butterflies in registers), bits 2–6 the lane's bits 0–4 (butterflies across lanes by shuffle). The whole warp
// must call it.
__device__ __forceinline__ void fwht_warp(float (&v)[4], int lane) {
  const float a0 = v[0] + v[1], a1 = v[0] - v[1], a2 = v[2] + v[3], a3 = v[2] - v[3];
  v[0] = a0 + a2, v[2] = a0 - a2, v[1] = a1 + a3, v[3] = a1 - a3;
#pragma unroll
  for (int m = 0; m < 5; ++m) {
    const bool hi = (lane >> m) & 1;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float o = __shfl_xor_sync(0xffffffffu, v[t], 1 << m);
      v[t] = hi ? o - v[t] : v[t] + o;  // (a, b) → (a + b, a − b), a the element whose bit is 0
    }
  }
}

template <int B, int NT, int RT, int kEpi>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks) hlwq_gemm_kernel(KParams p) {
  HLWQ_PDL_PREAMBLE();
  constexpr int kW = 2 * B;  // u32 per lane per row tile per k-unit
  constexpr int kU = kUnits<B, RT>;
  extern __shared__ uint4 xs[];  // [NT·ku·128] staged activations
  __shared__ float red[kWarps][RT * NT * 4][32];
  __shared__ uint2 tab[kTab<B>];  // {hi, lo} parts of the centroids
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
  const int by = blockIdx.y;
  const uint32_t* q = p.q0;
  const float* s = p.s0;
  if (p.tile_mat) {
    const int m = p.tile_mat[by];
    if (m < 0) return;  // whole block leaves together
    q = p.qarr[m];
    s = p.sarr[m];
  }
  for (int i = threadIdx.x; i < kTab<B>; i += blockDim.x) {
    const int c0 = B <= 5 ? i & ((1 << B) - 1) : i, c1 = B <= 5 ? i >> B : 0;
    const float hi0 = bf16_round(p.codebook[c0]), hi1 = bf16_round(p.codebook[c1]);
    const float lo0 = p.codebook[c0] - hi0, lo1 = p.codebook[c1] - hi1;
    if constexpr (B <= 5) {
      tab[i] = make_uint2(bf16_bits(hi0) | (bf16_bits(hi1) << 16), bf16_bits(lo0) | (bf16_bits(lo1) << 16));
    } else {
      tab[i] = make_uint2(bf16_bits(hi0), bf16_bits(lo0));
    }
  }
  const int ku = p.ku, S = p.split, G = kWarps / S, ks = warp % S, gl = warp / S;
  const uint4* X = reinterpret_cast<const uint4*>(p.x) + int64_t(by) * NT * ku * 4 * 32;
  if (p.x_smem) {
    for (int i = threadIdx.x; i < NT * ku * 128; i += blockDim.x) xs[i] = __ldg(X + i);
    X = xs;
  }
  __syncthreads();  // the table (and the staged activations)

  for (int base = blockIdx.x * G; base < p.n_groups; base += gridDim.x * G) {
    const int grp = base + gl;
    const bool live = grp < p.n_groups;
    float acc[RT][NT][4] = {};
    if (live) {
      for (int u0 = ks; u0 < ku; u0 += S * kU) {
        uint32_t wa[kU][RT][kW];
        float2 sc[kU][RT];
#pragma unroll
        for (int j = 0; j < kU; ++j) {
          const int u = u0 + j * S;
          if (u >= ku) break;
#pragma unroll
          for (int r = 0; r < RT; ++r) {
            const int64_t rt = int64_t(RT) * grp + r;
            const uint32_t* src = q + ((rt * ku + u) * 32 + lane) * kW;
            if constexpr (B % 2 == 0) {  // 8·B bytes per lane, 16-byte aligned
#pragma unroll
              for (int hh = 0; hh < kW / 4; ++hh) {
                const uint4 v = __ldg(reinterpret_cast<const uint4*>(src) + hh);
                wa[j][r][4 * hh] = v.x, wa[j][r][4 * hh + 1] = v.y, wa[j][r][4 * hh + 2] = v.z,
                              wa[j][r][4 * hh + 3] = v.w;
              }
            } else {  // 8-byte aligned only
#pragma unroll
              for (int hh = 0; hh < kW / 2; ++hh) {
                const uint2 v = __ldg(reinterpret_cast<const uint2*>(src) + hh);
                wa[j][r][2 * hh] = v.x, wa[j][r][2 * hh + 1] = v.y;
              }
            }
            sc[j][r] = __ldg(reinterpret_cast<const float2*>(s) + ((rt * ku + u) * 8 + g));
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
              xa[nt][jj] = p.x_smem ? X[xi] : __ldg(X + xi);
            }
#pragma unroll
          for (int r = 0; r < RT; ++r) {
            float part[NT][4] = {}, lo[NT][4] = {};  // two chains of MMAs: independent, summed once per block
#pragma unroll
            for (int st = 0; st < 8; ++st) {
              const uint32_t v0 = a_field<B>(wa[j][r], 4 * st), v1 = a_field<B>(wa[j][r], 4 * st + 1),
                             v2 = a_field<B>(wa[j][r], 4 * st + 2), v3 = a_field<B>(wa[j][r], 4 * st + 3);
              const uint2 a0 = a_reg<B>(v0, tab), a1 = a_reg<B>(v1, tab), a2 = a_reg<B>(v2, tab),
                          a3 = a_reg<B>(v3, tab);
#pragma unroll
              for (int nt = 0; nt < NT; ++nt) {
                const uint4& b = xa[nt][st >> 1];
                const uint32_t b0 = st & 1 ? b.z : b.x, b1 = st & 1 ? b.w : b.y;
                mma_bf16(part[nt], a0.x, a1.x, a2.x, a3.x, b0, b1);
                mma_bf16(lo[nt], a0.y, a1.y, a2.y, a3.y, b0, b1);
              }
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {  // the block scale r/128, once per block
              acc[r][nt][0] += (part[nt][0] + lo[nt][0]) * sc[j][r].x;
              acc[r][nt][1] += (part[nt][1] + lo[nt][1]) * sc[j][r].x;
              acc[r][nt][2] += (part[nt][2] + lo[nt][2]) * sc[j][r].y;
              acc[r][nt][3] += (part[nt][3] + lo[nt][3]) * sc[j][r].y;
            }
          }
        }
      }
    }

    float* a = &acc[0][0][0];
    if (S > 1) {  // split-k reduction into the group's first warp (S is block-uniform)
#pragma unroll
      for (int i = 0; i < RT * NT * 4; ++i) red[warp][i][lane] = a[i];
      __syncthreads();
      if (ks == 0)
#pragma unroll
        for (int i = 0; i < RT * NT * 4; ++i)
          for (int w = 1; w < S; ++w) a[i] += red[warp + w][i][lane];
      __syncthreads();
    }
    if (!live || ks != 0) continue;

    const int c = lane & 3;
    // C fragment: acc[r][nt][i] is (row tile RT·grp+r, row g + 8·(i/2)), slot 8·(by·NT+nt) + 2c + i%2
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t slot = int64_t(by * NT + nt) * 8 + 2 * c + (i & 1);
        if constexpr (kEpi == kSwigluF32) {
          static_assert(RT == 2, "SwiGLU pairs a gate tile with an up tile");
          const int64_t f = int64_t(grp) * 16 + g + 8 * (i >> 1);
          if (f < p.out / 2) p.y[slot * p.ldy + f] = silu_f(acc[0][nt][i]) * acc[RT - 1][nt][i];
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

// The split and grid as gemm.cu's launch_rt (gemm_launch.h).
template <int B, int NT, int RT, int kEpi>
void launch_rt(KParams kp, int64_t out_pad, int64_t tiles, int64_t config_tiles, cudaStream_t st,
               const char* what) {
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "{} hlwq gemm: SM count", what);
  auto kern = hlwq_gemm_kernel<B, NT, RT, kEpi>;
  const size_t xbytes = size_t(NT) * size_t(kp.ku) * 128 * sizeof(uint4);
  const GemmLaunchShape shape =
      gemm_launch_shape_for(kern, GemmLaunchProblem{out_pad / (16 * RT), kp.ku, kUnits<B, RT>, config_tiles, sms, xbytes}, what);
  kp.n_groups = int(out_pad / (16 * RT));
  kp.split = shape.split;
  kp.x_smem = shape.x_smem;
  const size_t smem = kp.x_smem ? xbytes : 0;
  if (smem > (size_t(32) << 10))  // the static part (reduction buffer, table) takes up to 16 KiB of the default 48
    HLWQ_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                    "{} hlwq gemm: {} bytes of shared memory", what, smem);
  const dim3 grid(unsigned(shape.blocks), unsigned(tiles));
  kern<<<grid, kWarps * 32, smem, st>>>(kp);
  HLWQ_CUDA_LAUNCH_CHECK("{} hlwq{} gemm grid {}x{} split {}", what, B, grid.x, grid.y, kp.split);
}

// Row tiles per group as gemm.cu's launch (RT = 2 for SwiGLU and for the tall lm_head at ≤ 8 tokens).
template <int B, int NT, int kEpi>
void launch(const KParams& kp, int64_t out_pad, int64_t tiles, int64_t config_tiles, cudaStream_t st,
            const char* what) {
  if constexpr (kEpi == kSwigluF32) launch_rt<B, NT, 2, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
  else if constexpr (kEpi == kStore && NT == 1) {
    if (out_pad / 16 >= 4096) launch_rt<B, NT, 2, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    else launch_rt<B, NT, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
  } else {
    launch_rt<B, NT, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
  }
}

// 8-slot tiles (NT = 1) for any width; 16-slot tiles (NT = 2: each weight read serves twice the tokens) for the
// widths users pick.
template <int kEpi>
void launch_bits(int bits, int NT, const KParams& kp, int64_t out_pad, int64_t tiles, int64_t config_tiles,
                 cudaStream_t st,
                 const char* what) {
  if constexpr (kEpi == kStore) {  // the grouped epilogues run 8-slot tiles only
    if (NT == 2) switch (bits) {
        case 3: return launch<3, 2, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
        case 4: return launch<4, 2, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
        case 5: return launch<5, 2, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
        default: break;
      }
  }
  HLWQ_CHECK(NT == 1, "{}: no 16-token HLWQ kernel for {} bits", what, bits);
  switch (bits) {
    case 2: return launch<2, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    case 3: return launch<3, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    case 4: return launch<4, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    case 5: return launch<5, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    case 6: return launch<6, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    case 7: return launch<7, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    case 8: return launch<8, 1, kEpi>(kp, out_pad, tiles, config_tiles, st, what);
    default: break;
  }
  fail("{}: HLWQ bits {} must be in [2, 8]", what, bits);
}

// One warp per (slot, 128-column block): lane holds columns 4·lane … 4·lane+3 of the block.
__global__ void hlwq_pack_kernel(const float* __restrict__ x, int64_t ldx, int64_t n_rows, int64_t in,
                                 const int* __restrict__ slot_tok, const int* __restrict__ tile_mat, int64_t n_tiles,
                                 int64_t n_slots, int in_pad, uint32_t* __restrict__ out) {
  HLWQ_PDL_PREAMBLE();
  const int64_t nb = in_pad / 128, wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (wid >= n_slots * nb) return;  // warp-uniform
  const int64_t slot = wid / nb, k0 = (wid % nb) * 128 + 4 * lane;
  if (tile_mat && (slot >> 3) < n_tiles && tile_mat[slot >> 3] < 0) return;  // a tile the grouped kernels skip
  const int64_t row = slot_tok ? slot_tok[slot] : slot;
  const bool ok = row >= 0 && row < n_rows;
  float v[4];
#pragma unroll
  for (int t = 0; t < 4; ++t) v[t] = ok && k0 + t < in ? x[row * ldx + k0 + t] : 0.f;
  fwht_warp(v, lane);
#pragma unroll
  for (int t = 0; t < 4; t += 2) {
    __nv_bfloat162 h = __floats2bfloat162_rn(v[t], v[t + 1]);
    out[xfrag_elem(slot, k0 + t, in_pad) / 2] = *reinterpret_cast<uint32_t*>(&h);
  }
}

}  // namespace

void hlwq_pack_activations(const float* x, int64_t ldx, int64_t n_rows, int64_t in, const int* slot_tok,
                           int64_t n_slots, int64_t in_pad, uint32_t* xfrag, cudaStream_t st) {
  HLWQ_CHECK(in_pad % 128 == 0 && in <= in_pad, "hlwq_pack_activations: in {} in_pad {}", in, in_pad);
  const int64_t slots = (n_slots + 15) / 16 * 16;  // the 16-slot tiles read whole tiles
  const int64_t threads = slots * (in_pad / 128) * 32;
  if (threads == 0) return;
  hlwq_pack_kernel<<<unsigned((threads + 255) / 256), 256, 0, st>>>(x, ldx, n_rows, in, slot_tok, nullptr, 0, slots,
                                                                   int(in_pad), xfrag);
  HLWQ_CUDA_LAUNCH_CHECK("hlwq_pack_activations {} slots x {}", slots, in);
}

void hlwq_pack_slots(const float* h, int64_t ldh, int64_t n_slots, int64_t in, const int* tile_mat, int64_t in_pad,
                     uint32_t* xfrag, cudaStream_t st) {
  HLWQ_CHECK(in_pad % 128 == 0 && in <= in_pad && n_slots % 8 == 0 && tile_mat, "hlwq_pack_slots: {} slots, in {} "
             "in_pad {}", n_slots, in, in_pad);
  const int64_t threads = n_slots * (in_pad / 128) * 32;
  if (threads == 0) return;
  hlwq_pack_kernel<<<unsigned((threads + 255) / 256), 256, 0, st>>>(h, ldh, n_slots, in, nullptr, tile_mat,
                                                                   n_slots / 8, n_slots, int(in_pad), xfrag);
  HLWQ_CUDA_LAUNCH_CHECK("hlwq_pack_slots {} slots x {}", n_slots, in);
}

void hlwq_gemm(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st) {
  if (T == 0) return;
  HLWQ_CHECK(w.format == PackedFormat::hlwq && w.codebook_dev.size() == (size_t(1) << w.bits),
             "hlwq_gemm: not an HLWQ matrix with its codebook ({} bits, {} centroids)", w.bits, w.codebook_dev.size());
  KParams kp{};
  kp.q0 = w.q.get();
  kp.s0 = w.scale.get();
  kp.codebook = w.codebook_dev.get();
  kp.ku = int(w.in_pad / 128);
  kp.x = xfrag;
  kp.n_slots = int(T);
  kp.out = int(w.out);
  kp.y = y;
  kp.ldy = ldy;
  const bool wide = w.bits >= 3 && w.bits <= 5;
  if (T <= 8) launch_bits<kStore>(w.bits, 1, kp, w.out_pad, 1, 1, st, "hlwq");
  else if (wide) launch_bits<kStore>(w.bits, 2, kp, w.out_pad, (T + 15) / 16, (T + 15) / 16, st, "hlwq");
  else launch_bits<kStore>(w.bits, 1, kp, w.out_pad, (T + 7) / 8, (T + 7) / 8, st, "hlwq");
}

void hlwq_gemm_grouped(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                       int64_t max_tiles, float* y, int64_t ldy, const float* slot_w, cudaStream_t st,
                       int64_t launch_tiles) {
  if (max_tiles == 0) return;
  const int64_t cfg = launch_tiles > 0 ? launch_tiles : max_tiles;
  HLWQ_CHECK(w.format == PackedFormat::hlwq && w.codebook.size() == (size_t(1) << w.bits),
             "hlwq_gemm_grouped: not HLWQ matrices with their codebook ({} bits, {} centroids)", w.bits,
             w.codebook.size());
  KParams kp{};
  kp.qarr = w.q.get();
  kp.sarr = w.scale.get();
  kp.tile_mat = tile_mat;
  kp.codebook = w.codebook.get();
  kp.ku = int(w.in_pad / 128);
  kp.x = xfrag;
  kp.n_slots = int(max_tiles * 8);
  kp.out = int(w.out);
  kp.y = y;
  kp.ldy = ldy;
  kp.slot_w = slot_w;
  if (epi == GroupedEpilogue::swiglu_f32) {
    HLWQ_CHECK(y && w.out % 2 == 0 && w.out / 2 <= ldy, "hlwq_gemm_grouped swiglu: {} gate_up rows, row stride {}",
               w.out, ldy);
    launch_bits<kSwigluF32>(w.bits, 1, kp, w.out_pad, max_tiles, cfg, st, "hlwq gate_up");
  } else {
    HLWQ_CHECK(epi == GroupedEpilogue::weighted && y && slot_w, "hlwq_gemm_grouped: HLWQ experts take the fp32 "
               "SwiGLU epilogue or the weighted one with an output and weights");
    launch_bits<kWeighted>(w.bits, 1, kp, w.out_pad, max_tiles, cfg, st, "hlwq down");
  }
}

}  // namespace hlwq::cuda
