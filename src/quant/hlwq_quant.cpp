#include "quant/hlwq_quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace hlwq {

HlwqPacked hlwq_quantize_matrix(const float* w, int64_t out, int64_t in, const HlwqCodebook& cb, int bits,
                                HlwqBitOrder order, HlwqScale mode) {
  HLWQ_CHECK(out > 0 && in > 0, "hlwq_quantize_matrix: bad shape [{}, {}]", out, in);
  HLWQ_CHECK(bits >= 2 && bits <= 8 && cb.n_levels() == (1 << bits),
             "hlwq_quantize_matrix: a {}-bit code needs a {}-level codebook, got {}", bits, 1 << bits, cb.n_levels());
  constexpr int kB = 128;
  HlwqPacked r;
  r.out = out;
  r.in = in;
  r.bits = bits;
  r.n_blocks = (in + kB - 1) / kB;
  const int64_t rb = r.n_blocks * 16 * bits;
  r.codes.resize(size_t(out * rb));
  r.norms.resize(size_t(out * r.n_blocks));
  std::vector<WeightError> row_err(static_cast<size_t>(out));  // summed in row order: thread-count independent
  int64_t first_bad_row = out;
  // The region neither allocates nor throws: stack buffers, and the packing's range check cannot fail because
  // nearest() returns indices below the table size (checked to be 2^bits above).
#pragma omp parallel for schedule(static) reduction(min : first_bad_row)
  for (int64_t o = 0; o < out; ++o) {
    const float* row = w + o * in;
    bool finite = true;
    for (int64_t k = 0; k < in; ++k) finite &= std::isfinite(row[k]);
    if (!finite) {
      first_bad_row = std::min(first_bad_row, o);
      continue;
    }
    alignas(64) float buf[kB];
    uint8_t codes[kB];
    WeightError err;
    for (int64_t blk = 0; blk < r.n_blocks; ++blk) {
      const int64_t k0 = blk * kB, len = std::min<int64_t>(kB, in - k0);
      std::copy(row + k0, row + k0 + len, buf);
      std::fill(buf + len, buf + kB, 0.0f);
      const uint16_t s = hlwq_encode_block(buf, cb, mode, codes);
      r.norms[size_t(o * r.n_blocks + blk)] = s;
      hlwq_pack_codes(codes, kB, bits, order, r.codes.data() + o * rb + blk * 16 * bits);
      hlwq_decode_block(codes, s, cb, buf);
      err += weight_error(row + k0, buf, len);
    }
    row_err[size_t(o)] = err;
  }
  HLWQ_CHECK(first_bad_row == out, "hlwq_quantize_matrix: non-finite weight in row {} of [{}, {}]", first_bad_row,
             out, in);
  for (const WeightError& e : row_err) r.error += e;
  return r;
}

void hlwq_dequantize_packed(const HlwqPacked& p, const HlwqCodebook& cb, HlwqBitOrder order, float* w) {
  constexpr int kB = 128;
  const int64_t rb = p.n_blocks * 16 * p.bits;
  HLWQ_CHECK(p.codes.size() == size_t(p.out * rb) && p.norms.size() == size_t(p.out * p.n_blocks) &&
                 cb.n_levels() == (1 << p.bits),
             "hlwq_dequantize_packed: inconsistent codes for [{}, {}] at {} bits", p.out, p.in, p.bits);
  alignas(64) float buf[kB];
  uint8_t codes[kB];
  for (int64_t o = 0; o < p.out; ++o)
    for (int64_t b = 0; b < p.n_blocks; ++b) {
      const int64_t k0 = b * kB, len = std::min<int64_t>(kB, p.in - k0);
      hlwq_unpack_codes(p.codes.data() + o * rb + b * 16 * p.bits, kB, p.bits, order, codes);
      hlwq_decode_block(codes, p.norms[size_t(o * p.n_blocks + b)], cb, buf);
      std::copy(buf, buf + len, w + o * p.in + k0);
    }
}

}  // namespace hlwq
