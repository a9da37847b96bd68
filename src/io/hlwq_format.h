// Native HLWQ checkpoints (docs/hlwq-format.md, byte for byte): per quantized Linear `P` (from `P.weight`
// [out, in]) the checkpoint holds
//   P.hlwq_codes   U8  [out, n_blocks · 16 · bits]  codes, bit-packed LSB-first per row (hlwq_pack.h)
//   P.hlwq_norms   F16 [out, n_blocks]              one scale per 128-input block
//   P.weight_shape I64 [2] = [out, in]
// with n_blocks = ⌈in/128⌉ (the tail of the last block is zero padding), and config.json carries a
// `quantization_config` with quant_method "hlwq" that names the codebook and lists its values (the values are
// authoritative; decoding needs nothing else). Version 2 adds `overrides`: modules whose width and codebook differ
// from the top-level ones (the first override whose targets match a module decides it). This file holds the
// names, sizes and that JSON block, both ways, and which width a module resolves to.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq {

inline constexpr int kHlwqBlock = 128;         // inputs per block (one FWHT, one norm)
inline constexpr int kHlwqFormatVersion = 1;           // files without overrides (every module one width)
inline constexpr int kHlwqFormatVersionOverrides = 2;  // files with overrides (old readers refuse the version)
inline constexpr int kHlwqMinBits = 2, kHlwqMaxBits = 8;
inline constexpr const char* kHlwqQuantMethod = "hlwq";
inline constexpr const char* kHlwqFormatName = "hlwq-native";

inline std::string hlwq_codes_name(const std::string& base) { return base + ".hlwq_codes"; }
inline std::string hlwq_norms_name(const std::string& base) { return base + ".hlwq_norms"; }
inline std::string hlwq_shape_name(const std::string& base) { return base + ".weight_shape"; }

inline int64_t hlwq_n_blocks(int64_t in) { return (in + kHlwqBlock - 1) / kHlwqBlock; }
// Bytes of one row's codes: each block of 128 codes packs into exactly 16 · bits bytes.
inline int64_t hlwq_row_bytes(int64_t in, int bits) { return hlwq_n_blocks(in) * (kHlwqBlock / 8) * bits; }

// One entry of quantization_config.overrides: the modules it targets (names or "re:" patterns, matched like
// `ignore`: a pattern is anchored at the name's start, as Python's re.match) get `bits` and `codebook`.
struct HlwqOverride {
  std::vector<std::string> targets;
  int bits = 4;
  std::string codebook_name = "lloyd-max-gaussian";
  std::vector<float> codebook;  // [2^bits] ascending
};

// The width and codebook a module resolves to (points into the HlwqFormat, which must outlive it).
struct HlwqWidth {
  int bits = 0;
  const std::vector<float>* codebook = nullptr;
};

// What the quantization_config block says.
struct HlwqFormat {
  int bits = 4;
  // How the norms were chosen: "l2-norm" (r = ‖b‖₂) or "least-squares" (r = ⟨b, v⟩/⟨v, v⟩). Decoding is the same
  // for both (w = r · H(c[code]/√128)); the field documents the checkpoint.
  std::string scale_rule = "least-squares";
  // Codebook identity: "lloyd-max-gaussian" (converged MSE-optimal table for N(0,1)) or "seed-q5" (the seed's
  // unconverged 5-bit table); values are the ascending centroids [2^bits] in the z = √128·H(b/r) domain.
  std::string codebook_name = "lloyd-max-gaussian";
  std::vector<float> codebook;
  std::vector<std::string> ignore;  // names and "re:" patterns kept unquantized (as compressed-tensors writes it)
  std::vector<HlwqOverride> overrides;  // version 2 only; empty: every module has `bits` and `codebook`
};

// True when `target` (a module name, or "re:" + an ECMAScript regex anchored at the start) matches `module`.
// Throws on a bad regex, naming it.
bool hlwq_target_matches(const std::string& target, const std::string& module);
// The first override matching `module`, else the top-level bits and codebook.
HlwqWidth hlwq_resolve(const HlwqFormat& f, const std::string& module);

nlohmann::json hlwq_quantization_config(const HlwqFormat& f);
// Validates everything a reader relies on (method, format, version, block size, packing, bits, codebook size
// and order); errors name `where` and the field.
HlwqFormat parse_hlwq_quantization_config(const nlohmann::json& q, const std::string& where);

}  // namespace hlwq
