// AVX2+FMA+F16C HLWQ kernels. Two ways to widen codes, both exact (the floats are the codebook's own bits):
//   2..5 bits (the widths users pick): 32 codes at a time become bytes — for each code a byte shuffle gathers
//     the two bytes that hold it into a 16-bit lane, a multiply by a power of two and one shift cut it out —
//     and the lookup is a byte shuffle per byte of the float (four 16-entry tables; 32 levels use two tables
//     and a byte blend), interleaved back into floats by unpacks. No cross-lane permutes, which are slow on
//     the Zen cores this runs on.
//   6..8 bits: eight codes as one 64-bit integer, broadcast, shifted per lane (two variable 64-bit shifts, one
//     blend) and looked up with a gather.
// Both leave the weights in a fixed order inside each chunk of 32 (or 8) inputs; rather than shuffle every
// weight back, prepare() stores the rotated activations in that same order, once per call.
// All headers come before the target pragma, so no inline library code is compiled for AVX2 and then shared
// with portable callers. Clang ignores GCC's target pragma; its own attribute pragma gives every function below
// (members and templates included) the same target.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "quant/hadamard.h"
#include "quant/hlwq_linear.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace hlwq {
namespace {

constexpr int kB = 128;
constexpr int kMaxTokens = 3;  // accumulators per row stay in registers: (1 lookup + 3 sums + 3 totals) ymm

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int B>
struct Lut {  // 6..8 bits: 64..256 levels, a gather
  const float* c;
  explicit Lut(const float* cb) : c(cb) {}
  __m256 operator()(__m256i i) const { return _mm256_i32gather_ps(c, i, 4); }
};
template <>
struct Lut<2> {
  __m256 t0;
  explicit Lut(const float* c) : t0(_mm256_setr_ps(c[0], c[1], c[2], c[3], 0, 0, 0, 0)) {}
  __m256 operator()(__m256i i) const { return _mm256_permutevar8x32_ps(t0, i); }
};
template <>
struct Lut<3> {
  __m256 t0;
  explicit Lut(const float* c) : t0(_mm256_loadu_ps(c)) {}
  __m256 operator()(__m256i i) const { return _mm256_permutevar8x32_ps(t0, i); }
};
template <>
struct Lut<4> {  // bit 3 picks the table half: shifted to the sign bit for blendv
  __m256 t0, t1;
  explicit Lut(const float* c) : t0(_mm256_loadu_ps(c)), t1(_mm256_loadu_ps(c + 8)) {}
  __m256 operator()(__m256i i) const {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, i), _mm256_permutevar8x32_ps(t1, i),
                            _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
  }
};
template <>
struct Lut<5> {
  __m256 t0, t1, t2, t3;
  explicit Lut(const float* c)
      : t0(_mm256_loadu_ps(c)), t1(_mm256_loadu_ps(c + 8)), t2(_mm256_loadu_ps(c + 16)), t3(_mm256_loadu_ps(c + 24)) {}
  __m256 operator()(__m256i i) const {
    const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 28));
    const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, i), _mm256_permutevar8x32_ps(t1, i), b3);
    const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t2, i), _mm256_permutevar8x32_ps(t3, i), b3);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(i, 27)));
  }
};

// Widens the 8 codes of one group (its bytes at p, with at least 8 readable bytes) to 32-bit lanes in the
// order (0, 4, 1, 5, 2, 6, 3, 7).
template <int B, HlwqBitOrder O>
struct Unpacker {
  __m256i sh_lo, sh_hi, mask;
  Unpacker()
      : sh_lo(_mm256_setr_epi64x(hlwq_group_shift(0, B, O), hlwq_group_shift(1, B, O), hlwq_group_shift(2, B, O),
                                 hlwq_group_shift(3, B, O))),
        sh_hi(_mm256_setr_epi64x(hlwq_group_shift(4, B, O), hlwq_group_shift(5, B, O), hlwq_group_shift(6, B, O),
                                 hlwq_group_shift(7, B, O))),
        mask(_mm256_set1_epi32((1 << B) - 1)) {}
  __m256i operator()(const uint8_t* p) const {
    uint64_t raw;
    std::memcpy(&raw, p, 8);
    // msb_first: the group's bytes are a big-endian integer in the top 8·B bits after the byte swap
    const uint64_t g = O == HlwqBitOrder::lsb_first ? raw : __builtin_bswap64(raw) >> (64 - 8 * B);
    const __m256i v = _mm256_set1_epi64x(int64_t(g));
    const __m256i lo = _mm256_srlv_epi64(v, sh_lo), hi = _mm256_slli_epi64(_mm256_srlv_epi64(v, sh_hi), 32);
    return _mm256_and_si256(_mm256_blend_epi32(lo, hi, 0xAA), mask);
  }
};

// One block's packed codes copied to a buffer with 8 readable bytes past the end (the last group's 8-byte load),
// so no load ever leaves the tensor, even for the last block of an mmapped file.
template <int B>
struct BlockBuf {
  alignas(32) uint8_t b[16 * B + 8] = {};
  const uint8_t* load(const uint8_t* src) {
    std::memcpy(b, src, 16 * B);
    return b;
  }
};

// w[128] (codebook values of block b of row r, natural order) → FWHT, scale, the block's columns of out_row.
// The same operations in the same order as hlwq_decode_row, so the result is bit-identical.
inline void store_block(const HlwqMatrixView& v, int64_t r, int64_t b, float* w, float* out_row) {
  fwht128_unscaled(w);
  const float s = _cvtsh_ss(v.norms[r * v.n_blocks() + b]) * (1.0f / kB);
  const int64_t k0 = b * kB, len = v.in - k0 < kB ? v.in - k0 : kB;
  for (int64_t j = 0; j < len; ++j) out_row[k0 + j] = s * w[j];
}

// ---- 2..5 bits: byte codes and byte-plane lookup ----

// Codes of two groups (lane 0: the group at p, lane 1: the next) as 16-bit lanes: a shuffle gathers each code's
// two bytes (little-endian for lsb_first, big-endian for msb_first), a multiply by 2^k shifts its field to the
// top, a shift by 16 − B brings it down.
template <int B, HlwqBitOrder O>
struct ByteUnpacker {
  __m256i ctrl, mul;
  ByteUnpacker() {
    alignas(32) int8_t c[32];
    alignas(32) int16_t m[16];
    for (int lane = 0; lane < 2; ++lane)
      for (int i = 0; i < 8; ++i) {
        const int bit = i * B, byte = bit / 8, s = bit % 8, at = lane * B;
        // lsb_first: field at bits [s, s+B) of lo | hi<<8; msb_first: at [16−s−B, 16−s) of hi | lo<<8
        const bool lsb = O == HlwqBitOrder::lsb_first;
        c[lane * 16 + 2 * i] = int8_t(at + (lsb ? byte : byte + 1));
        c[lane * 16 + 2 * i + 1] = int8_t(at + (lsb ? byte + 1 : byte));
        m[lane * 8 + i] = int16_t(uint16_t(1u << (lsb ? 16 - s - B : s)));
      }
    ctrl = _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
    mul = _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
  }
  // 16 bytes readable at p
  __m256i pair(const uint8_t* p) const {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(v, ctrl), mul), 16 - B);
  }
  // 32 codes (groups 0..3 at p) as bytes: lane 0 = [group 0 | group 2], lane 1 = [group 1 | group 3].
  __m256i operator()(const uint8_t* p) const { return _mm256_packus_epi16(pair(p), pair(p + 2 * B)); }
};

// Byte k of each centroid as a 16-entry shuffle table (both lanes); 32 levels: a low and a high table.
template <int B>
struct ByteLut {
  static constexpr int kHalves = B == 5 ? 2 : 1;
  __m256i t[4][kHalves];
  explicit ByteLut(const float* cb) {
    for (int k = 0; k < 4; ++k)
      for (int h = 0; h < kHalves; ++h) {
        alignas(16) uint8_t b[16] = {};
        for (int j = 0; j < 16 && h * 16 + j < (1 << B); ++j) {
          uint32_t u;
          std::memcpy(&u, cb + h * 16 + j, 4);
          b[j] = uint8_t(u >> (8 * k));
        }
        t[k][h] = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(b)));
      }
  }
  __m256i plane(int k, __m256i c, __m256i hi_sel) const {
    const __m256i lo = _mm256_shuffle_epi8(t[k][0], c);
    if constexpr (kHalves == 1) return lo;
    else return _mm256_blendv_epi8(lo, _mm256_shuffle_epi8(t[k][kHalves - 1], c), hi_sel);
  }
  // c: 32 byte codes → the 32 centroids, as 4 vectors in the chunk order of prepare()
  void operator()(__m256i c, __m256& f0, __m256& f1, __m256& f2, __m256& f3) const {
    const __m256i sel = kHalves == 1 ? c : _mm256_slli_epi16(c, 3);  // bit 4 → bit 7 (codes < 32: no spill-over)
    const __m256i b0 = plane(0, c, sel), b1 = plane(1, c, sel), b2 = plane(2, c, sel), b3 = plane(3, c, sel);
    const __m256i l01 = _mm256_unpacklo_epi8(b0, b1), h01 = _mm256_unpackhi_epi8(b0, b1);
    const __m256i l23 = _mm256_unpacklo_epi8(b2, b3), h23 = _mm256_unpackhi_epi8(b2, b3);
    f0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(l01, l23));
    f1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(l01, l23));
    f2 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01, h23));
    f3 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01, h23));
  }
};

// Where input j of a 32-chunk lands in the byte path's order: vector q = (j/4 even/odd, j/16), lane = (j/8)%2.
// (f0 = inputs 0-3 | 8-11, f1 = 4-7 | 12-15, f2 = 16-19 | 24-27, f3 = 20-23 | 28-31.)
constexpr int kChunkOrder[32] = {0,  1,  2,  3,  8,  9,  10, 11, 4,  5,  6,  7,  12, 13, 14, 15,
                                 16, 17, 18, 19, 24, 25, 26, 27, 20, 21, 22, 23, 28, 29, 30, 31};

template <int B>
struct PaddedBlock {  // one block's codes plus 16 readable bytes for the last pair load
  alignas(32) uint8_t b[16 * B + 16] = {};
  const uint8_t* load(const uint8_t* src) {
    std::memcpy(b, src, 16 * B);
    return b;
  }
};

template <int B, HlwqBitOrder O, int NT>
void gemv_tile_bytes(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, float* y,
                     int64_t ldy) {
  const ByteLut<B> lut(v.codebook);
  const ByteUnpacker<B, O> unpack;
  PaddedBlock<B> buf;
  const int64_t nb = v.n_blocks(), rb = v.row_bytes();
  for (int64_t r = 0; r < nr; ++r) {
    const uint8_t* row = v.codes + (r0 + r) * rb;
    const uint16_t* nrm = v.norms + (r0 + r) * nb;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = buf.load(row + b * 16 * B);
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
      for (int c = 0; c < 4; ++c) {  // 32 codes = 4 groups of 8 = 4·B bytes
        __m256 w0, w1, w2, w3;
        lut(unpack(p + c * 4 * B), w0, w1, w2, w3);
        const float* x0 = xp + b * kB + c * 32;
        if constexpr (NT == 1) {  // one token: two chains (s0, s1), so the FMA latency is not the limit
          s0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0), s0);
          s1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0 + 8), s1);
          s0 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x0 + 16), s0);
          s1 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x0 + 24), s1);
        } else {
          s0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0), s0);
          s0 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0 + 8), s0);
          s0 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x0 + 16), s0);
          s0 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x0 + 24), s0);
        }
        if constexpr (NT > 1) {
          const float* x1 = x0 + ldxp;
          s1 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1), s1);
          s1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + 8), s1);
          s1 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x1 + 16), s1);
          s1 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x1 + 24), s1);
        }
        if constexpr (NT > 2) {
          const float* x2 = x0 + 2 * ldxp;
          s2 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x2), s2);
          s2 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x2 + 8), s2);
          s2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x2 + 16), s2);
          s2 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x2 + 24), s2);
        }
      }
      const __m256 sc = _mm256_set1_ps(_cvtsh_ss(nrm[b]) * (1.0f / kB));
      if constexpr (NT == 1) s0 = _mm256_add_ps(s0, s1);
      a0 = _mm256_fmadd_ps(s0, sc, a0);
      if constexpr (NT > 1) a1 = _mm256_fmadd_ps(s1, sc, a1);
      if constexpr (NT > 2) a2 = _mm256_fmadd_ps(s2, sc, a2);
    }
    y[r] = hsum(a0);
    if constexpr (NT > 1) y[ldy + r] = hsum(a1);
    if constexpr (NT > 2) y[2 * ldy + r] = hsum(a2);
  }
}

// One block of a row back in the weight domain: lookup in chunk order, back to natural order, FWHT, scale.
template <int B, HlwqBitOrder O>
void decode_rows_bytes(const HlwqMatrixView& v, int64_t r0, int64_t nr, float* dst) {
  const ByteLut<B> lut(v.codebook);
  const ByteUnpacker<B, O> unpack;
  PaddedBlock<B> buf;
  const int64_t nb = v.n_blocks(), rb = v.row_bytes();
  alignas(32) float t[kB], w[kB];
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = buf.load(v.codes + (r0 + r) * rb + b * 16 * B);
      for (int c = 0; c < 4; ++c) {
        __m256 w0, w1, w2, w3;
        lut(unpack(p + c * 4 * B), w0, w1, w2, w3);
        _mm256_store_ps(t + c * 32, w0);
        _mm256_store_ps(t + c * 32 + 8, w1);
        _mm256_store_ps(t + c * 32 + 16, w2);
        _mm256_store_ps(t + c * 32 + 24, w3);
      }
      for (int j = 0; j < kB; ++j) w[(j & ~31) + kChunkOrder[j & 31]] = t[j];
      store_block(v, r0 + r, b, w, dst + r * v.in);
    }
}

// ---- 6..8 bits: 64-bit groups and a gather ----

template <int B, HlwqBitOrder O, int NT>
void gemv_tile(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, float* y,
               int64_t ldy) {
  const Lut<B> lut(v.codebook);
  const Unpacker<B, O> unpack;
  BlockBuf<B> buf;
  const int64_t nb = v.n_blocks(), rb = v.row_bytes();
  for (int64_t r = 0; r < nr; ++r) {
    const uint8_t* row = v.codes + (r0 + r) * rb;
    const uint16_t* nrm = v.norms + (r0 + r) * nb;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = buf.load(row + b * 16 * B);
      const float* x0 = xp + b * kB;
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
      for (int g = 0; g < 16; ++g) {
        const __m256 w = lut(unpack(p + g * B));
        s0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + g * 8), s0);
        if constexpr (NT > 1) s1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + ldxp + g * 8), s1);
        if constexpr (NT > 2) s2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + 2 * ldxp + g * 8), s2);
      }
      const __m256 sc = _mm256_set1_ps(_cvtsh_ss(nrm[b]) * (1.0f / kB));
      a0 = _mm256_fmadd_ps(s0, sc, a0);
      if constexpr (NT > 1) a1 = _mm256_fmadd_ps(s1, sc, a1);
      if constexpr (NT > 2) a2 = _mm256_fmadd_ps(s2, sc, a2);
    }
    y[r] = hsum(a0);
    if constexpr (NT > 1) y[ldy + r] = hsum(a1);
    if constexpr (NT > 2) y[2 * ldy + r] = hsum(a2);
  }
}

template <int B, HlwqBitOrder O>
void gemv_bits(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, int64_t nt, float* y,
               int64_t ldy) {
  for (int64_t t = 0; t < nt; t += kMaxTokens) {
    const int64_t n = nt - t < kMaxTokens ? nt - t : kMaxTokens;
    const float* x = xp + t * ldxp;
    float* yt = y + t * ldy;
    if constexpr (B <= 5) {
      if (n == 1) gemv_tile_bytes<B, O, 1>(v, r0, nr, x, ldxp, yt, ldy);
      else if (n == 2) gemv_tile_bytes<B, O, 2>(v, r0, nr, x, ldxp, yt, ldy);
      else gemv_tile_bytes<B, O, 3>(v, r0, nr, x, ldxp, yt, ldy);
    } else {
      if (n == 1) gemv_tile<B, O, 1>(v, r0, nr, x, ldxp, yt, ldy);
      else if (n == 2) gemv_tile<B, O, 2>(v, r0, nr, x, ldxp, yt, ldy);
      else gemv_tile<B, O, 3>(v, r0, nr, x, ldxp, yt, ldy);
    }
  }
}

template <int B, HlwqBitOrder O>
void decode_rows_bits(const HlwqMatrixView& v, int64_t r0, int64_t nr, float* dst) {
  const Lut<B> lut(v.codebook);
  const Unpacker<B, O> unpack;
  BlockBuf<B> buf;
  const int64_t nb = v.n_blocks(), rb = v.row_bytes();
  alignas(32) float t[8], w[kB];
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = buf.load(v.codes + (r0 + r) * rb + b * 16 * B);
      for (int g = 0; g < 16; ++g) {  // lanes hold codes (0, 4, 1, 5, 2, 6, 3, 7) of the group
        _mm256_store_ps(t, lut(unpack(p + g * B)));
        for (int i = 0; i < 8; ++i) w[g * 8 + (i % 2 ? 4 + i / 2 : i / 2)] = t[i];
      }
      store_block(v, r0 + r, b, w, dst + r * v.in);
    }
}

// One switch from (bits, order) to the instantiation; the view was checked at load (bits in 2..8).
template <template <int, HlwqBitOrder> class F, typename... A>
void dispatch(const HlwqMatrixView& v, A... a) {
  const bool lsb = v.order == HlwqBitOrder::lsb_first;
  switch (v.bits) {
#define HLWQ_CASE(B)                                                      \
  case B:                                                                 \
    return lsb ? F<B, HlwqBitOrder::lsb_first>::run(v, a...)              \
               : F<B, HlwqBitOrder::msb_first>::run(v, a...);
    HLWQ_CASE(2)
    HLWQ_CASE(3)
    HLWQ_CASE(4)
    HLWQ_CASE(5)
    HLWQ_CASE(6)
    HLWQ_CASE(7)
    HLWQ_CASE(8)
#undef HLWQ_CASE
    default: __builtin_trap();  // hlwq_check_view refuses other widths before any kernel runs
  }
}

template <int B, HlwqBitOrder O>
struct GemvF {
  static void run(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, int64_t nt,
                  float* y, int64_t ldy) {
    gemv_bits<B, O>(v, r0, nr, xp, ldxp, nt, y, ldy);
  }
};
template <int B, HlwqBitOrder O>
struct DecodeF {
  static void run(const HlwqMatrixView& v, int64_t r0, int64_t nr, float* dst) {
    if constexpr (B <= 5) decode_rows_bytes<B, O>(v, r0, nr, dst);
    else decode_rows_bits<B, O>(v, r0, nr, dst);
  }
};

void gemv_avx2(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, int64_t nt, float* y,
               int64_t ldy) {
  dispatch<GemvF>(v, r0, nr, xp, ldxp, nt, y, ldy);
}

void decode_rows_avx2(const HlwqMatrixView& v, int64_t r0, int64_t nr, float* dst) {
  dispatch<DecodeF>(v, r0, nr, dst);
}

void prepare_avx2(const float* x, int64_t in, int bits, float* xp) {
  const int64_t nb = (in + kB - 1) / kB;
  std::memcpy(xp, x, size_t(in) * sizeof(float));
  std::memset(xp + in, 0, size_t(nb * kB - in) * sizeof(float));
  const __m256i order8 = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < nb; ++b) {
    float* blk = xp + b * kB;
    fwht128_unscaled(blk);
    if (bits <= 5) {
      alignas(32) float t[kB];
      std::memcpy(t, blk, sizeof t);
      for (int j = 0; j < kB; ++j) blk[j] = t[(j & ~31) + kChunkOrder[j & 31]];
    } else {
      for (int g = 0; g < 16; ++g)
        _mm256_storeu_ps(blk + g * 8, _mm256_permutevar8x32_ps(_mm256_loadu_ps(blk + g * 8), order8));
    }
  }
}

constexpr HlwqKernels kAvx2 = {"avx2", prepare_avx2, gemv_avx2, decode_rows_avx2};

}  // namespace

const HlwqKernels& hlwq_kernels_avx2() { return kAvx2; }

}  // namespace hlwq

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
