// HLWQ codec. Both directions use the unscaled butterfly and fold the 1/√128 factors into the block scale:
// z = √128 · H(b/r) = FWHT(b)/r and r · H(c/√128) = (r/128) · FWHT(c), where FWHT = √128 · H. 1/128 is a power
// of two, so decode is exact up to the butterfly's own rounding.
#include "quant/hlwq_codec.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/hadamard.h"

namespace hlwq {
namespace {

constexpr int kB = kHadamardBlock;
constexpr float kMinNorm = 1e-10f;
// Up to this many levels a branch-free count over all midpoints (vectorized across the block) beats a binary
// search; both give the same index.
constexpr int kCountSearchMaxLevels = 32;

}  // namespace

HlwqCodebook::HlwqCodebook(std::span<const float> centroids) : centroids_(centroids.begin(), centroids.end()) {
  HLWQ_CHECK(centroids_.size() >= 2 && centroids_.size() <= 256, "HlwqCodebook: need 2..256 centroids, got {}",
             centroids_.size());
  for (size_t i = 1; i < centroids_.size(); ++i) {
    HLWQ_CHECK(centroids_[i - 1] < centroids_[i], "HlwqCodebook: centroids not strictly ascending at {} ({} >= {})",
               i, centroids_[i - 1], centroids_[i]);
    mids_.push_back((centroids_[i - 1] + centroids_[i]) * 0.5f);
  }
}

uint8_t HlwqCodebook::nearest(float z) const {
  return uint8_t(std::lower_bound(mids_.begin(), mids_.end(), z) - mids_.begin());
}

void HlwqCodebook::nearest_block(const float* z, uint8_t* codes) const {
  if (n_levels() > kCountSearchMaxLevels) {
    for (int j = 0; j < kB; ++j) codes[j] = nearest(z[j]);
    return;
  }
  int32_t idx[kB] = {};
  for (const float m : mids_)
    for (int j = 0; j < kB; ++j) idx[j] += int32_t(z[j] > m);
  for (int j = 0; j < kB; ++j) codes[j] = uint8_t(idx[j]);
}

uint16_t hlwq_encode_block(const float* b, const HlwqCodebook& cb, HlwqScale mode, uint8_t* codes) {
  alignas(64) float z[kB];
  double ss = 0;
  for (int j = 0; j < kB; ++j) {
    z[j] = b[j];
    ss += double(b[j]) * double(b[j]);
  }
  const float r = std::max(float(std::sqrt(ss)), kMinNorm);
  fwht128_unscaled(z);
  for (int j = 0; j < kB; ++j) z[j] /= r;
  cb.nearest_block(z, codes);
  if (mode == HlwqScale::l2_norm) return f32_to_f16(r);
  // Least squares: v = H(c/√128) = FWHT(c)/128; r = ⟨b, v⟩/⟨v, v⟩.
  alignas(64) float v[kB];
  const float* c = cb.centroids().data();
  for (int j = 0; j < kB; ++j) v[j] = c[codes[j]];
  fwht128_unscaled(v);
  double bv = 0, vv = 0;
  for (int j = 0; j < kB; ++j) {
    const double vj = double(v[j]) * (1.0 / kB);
    bv += double(b[j]) * vj;
    vv += vj * vj;
  }
  return f32_to_f16(float(bv / std::max(vv, 1e-20)));
}

void hlwq_decode_block(const uint8_t* codes, uint16_t r_f16, const HlwqCodebook& cb, float* w) {
  const float* c = cb.centroids().data();
  for (int j = 0; j < kB; ++j) w[j] = c[codes[j]];
  fwht128_unscaled(w);
  const float s = f16_to_f32(r_f16) * (1.0f / kB);
  for (int j = 0; j < kB; ++j) w[j] *= s;
}

void hlwq_roundtrip_row(const float* w, int64_t in, const HlwqCodebook& cb, HlwqScale mode, float* out) {
  alignas(64) float buf[kB];
  uint8_t codes[kB];
  for (int64_t k0 = 0; k0 < in; k0 += kB) {
    const int64_t len = std::min<int64_t>(kB, in - k0);
    std::copy(w + k0, w + k0 + len, buf);
    std::fill(buf + len, buf + kB, 0.0f);
    const uint16_t r = hlwq_encode_block(buf, cb, mode, codes);
    hlwq_decode_block(codes, r, cb, buf);
    std::copy(buf, buf + len, out + k0);
  }
}

HlwqCodes hlwq_encode(const float* w, int64_t out, int64_t in, const HlwqCodebook& cb, HlwqScale mode) {
  HLWQ_CHECK(out > 0 && in > 0, "hlwq_encode: bad shape [{}, {}]", out, in);
  HLWQ_CHECK(cb.n_levels() <= 256, "hlwq_encode: {} levels do not fit uint8 codes", cb.n_levels());
  HlwqCodes r;
  r.out = out;
  r.in = in;
  r.n_blocks = (in + kB - 1) / kB;
  r.codes.resize(size_t(out * r.n_blocks * kB));
  r.scales.resize(size_t(out * r.n_blocks));
  // Nothing in this region allocates or throws (stack buffer, block codec), so no exception can escape it.
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < out; ++o) {
    alignas(64) float buf[kB];
    for (int64_t blk = 0; blk < r.n_blocks; ++blk) {
      const int64_t k0 = blk * kB, len = std::min<int64_t>(kB, in - k0);
      std::copy(w + o * in + k0, w + o * in + k0 + len, buf);
      std::fill(buf + len, buf + kB, 0.0f);
      const int64_t bi = o * r.n_blocks + blk;
      r.scales[size_t(bi)] = hlwq_encode_block(buf, cb, mode, r.codes.data() + bi * kB);
    }
  }
  return r;
}

void hlwq_decode(const HlwqCodes& codes, const HlwqCodebook& cb, float* w) {
  HLWQ_CHECK(codes.n_blocks == (codes.in + kB - 1) / kB &&
                 codes.codes.size() == size_t(codes.out * codes.n_blocks * kB) &&
                 codes.scales.size() == size_t(codes.out * codes.n_blocks),
             "hlwq_decode: inconsistent codes for [{}, {}] ({} blocks, {} codes, {} scales)", codes.out, codes.in,
             codes.n_blocks, codes.codes.size(), codes.scales.size());
  const int n_levels = cb.n_levels();
  for (const uint8_t c : codes.codes)
    HLWQ_CHECK(c < n_levels, "hlwq_decode: code {} out of range for a {}-level table", c, n_levels);
  // As in hlwq_encode: validated above, so the region neither allocates nor throws.
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < codes.out; ++o) {
    alignas(64) float buf[kB];
    for (int64_t blk = 0; blk < codes.n_blocks; ++blk) {
      const int64_t bi = o * codes.n_blocks + blk, k0 = blk * kB, len = std::min<int64_t>(kB, codes.in - k0);
      hlwq_decode_block(codes.codes.data() + bi * kB, codes.scales[size_t(bi)], cb, buf);
      std::copy(buf, buf + len, w + o * codes.in + k0);
    }
  }
}

}  // namespace hlwq
