// The seed's "hlwq-q5" checkpoints (SPEC §4), read in place. A model directory is one when its
// polar_config.json says "format": "hlwq-q5". Each coded weight W (e.g. model.layers.0.self_attn.q_proj.weight,
// or a fused model.layers.0.mlp.experts.gate_up_proj) is three tensors whose key is W with every '.' written as
// "__" (a key that kept its dots is read the same way):
//   K__packed  U8   5-bit codes of the whole [out, n_blocks, 128] tensor, flat, 8 codes → 5 bytes MSB-first
//   K__norms   F16  [out, n_blocks]
//   K__meta    I64  [out, n_blocks, 128, total_codes] or [..., in]   (in defaults to n_blocks · 128)
// For a 3-D weight, out counts rows of all experts (E · rows). Every other tensor is stored as in a Hugging Face
// checkpoint. Centroids are not stored: the seed's unconverged 5-bit table (lloyd_max.h) is the only one.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace hlwq {

inline constexpr const char* kSeedQ5ConfigFile = "polar_config.json";
inline constexpr const char* kSeedQ5Format = "hlwq-q5";
inline constexpr int kSeedQ5Bits = 5;

struct SeedQ5Weight {
  std::string name;             // logical name, dots restored
  std::string key;              // tensor key prefix as stored
  int64_t out = 0, in = 0, n_blocks = 0;  // the coded matrix [out, in]
  const uint8_t* packed = nullptr;        // [out, n_blocks · 80] bytes (MSB-first rows)
  const uint16_t* norms = nullptr;        // [out, n_blocks] fp16 bits
};

// True when dir/polar_config.json exists; throws when it exists but is not an hlwq-q5 config hlwq reads
// (another format string, a block size other than 128, bits other than 5).
bool is_seed_q5_dir(const std::string& dir);

// True for the three tensors of a coded weight (…__packed / __norms / __meta).
bool seed_q5_is_part(const std::string& key);

// Every coded weight of the checkpoint, by logical name, each validated (meta values against the packed size,
// the norms' shape and dtype, a packed without its norms or meta). Errors name the file and key.
std::map<std::string, SeedQ5Weight> seed_q5_weights(const Checkpoint& ck);

}  // namespace hlwq
