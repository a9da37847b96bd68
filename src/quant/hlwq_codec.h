// HLWQ block codec (SPEC §4). A weight matrix [out, in] is cut per row into n_blocks = ⌈in/128⌉ blocks of 128
// (the tail zero-padded). Each block b gets a scale r (fp16) and 128 codes (indices into an ascending Lloyd-Max
// table c, one per uint8 in memory): r = max(‖b‖₂, 1e-10), z = √128 · H(b/r), code = argmin_k |z − c_k| (ties →
// lower index). Decode: w = r · H(c[code]/√128) with the fp16-rounded r. The least-squares variant replaces r by
// ⟨b, v⟩/⟨v, v⟩, v = H(c[code]/√128) the decoded unit block, which minimizes ‖b − r·v‖ for the chosen codes.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace hlwq {

enum class HlwqScale : uint8_t { l2_norm, least_squares };

// An ascending centroid table with its cell boundaries (midpoints, computed in float like the reference).
class HlwqCodebook {
 public:
  explicit HlwqCodebook(std::span<const float> centroids);  // 2..256 strictly ascending values

  int n_levels() const { return int(centroids_.size()); }
  const std::vector<float>& centroids() const { return centroids_; }
  // Index of the nearest centroid = number of midpoints strictly below z (exact argmin, ties → lower index).
  uint8_t nearest(float z) const;
  // codes[i] = nearest(z[i]) for i < 128.
  void nearest_block(const float* z, uint8_t* codes) const;

 private:
  std::vector<float> centroids_;  // [n_levels]
  std::vector<float> mids_;       // [n_levels − 1]
};

// Encoded matrix: codes [out, n_blocks, 128] (uint8 each), scales [out, n_blocks] (fp16 bits).
struct HlwqCodes {
  int64_t out = 0, in = 0, n_blocks = 0;
  std::vector<uint8_t> codes;    // [out, n_blocks, 128]
  std::vector<uint16_t> scales;  // [out, n_blocks] fp16
};

// One block: b[128] → codes[128], returns the fp16 scale.
uint16_t hlwq_encode_block(const float* b, const HlwqCodebook& cb, HlwqScale mode, uint8_t* codes);
// One block: w[128] = f16(r) · H(c[codes]/√128).
void hlwq_decode_block(const uint8_t* codes, uint16_t r_f16, const HlwqCodebook& cb, float* w);
// One row: w[in] → encode → decode → out[in] (tail handled like the matrix codec). Scratch-free, no allocation.
void hlwq_roundtrip_row(const float* w, int64_t in, const HlwqCodebook& cb, HlwqScale mode, float* out);

// Whole matrix (rows in parallel with OpenMP; the result does not depend on the thread count).
HlwqCodes hlwq_encode(const float* w /*[out, in]*/, int64_t out, int64_t in, const HlwqCodebook& cb,
                      HlwqScale mode = HlwqScale::l2_norm);
void hlwq_decode(const HlwqCodes& codes, const HlwqCodebook& cb, float* w /*[out, in]*/);

}  // namespace hlwq
