// Writing a synthetic checkpoint at disk speed with bounded memory. The tensors are generated in file order into
// one of two chunk buffers by all OpenMP threads while the other buffer is being written (pwrite through
// CheckpointWriter, so every write is large and sequential), inside a StagedDir, so DST appears only when complete.
// Peak memory: two chunks (2 × 64 MiB by default) plus the tensor list. Also writes config.json (the target's, with
// the format's quantization_config), generation_config.json (the eos ids) and, when one is given, a tokenizer.
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "synth/synth_tensors.h"

namespace hlwq {

struct SynthOptions {
  std::filesystem::path dst;
  SynthFormat format = SynthFormat::ct_int4;
  uint64_t seed = 1;
  bool force = false;
  uint64_t max_shard_bytes = 5000000000ull;      // HF's "5GB" shards
  uint64_t chunk_bytes = uint64_t(64) << 20;     // one of the two generation buffers
  std::optional<std::filesystem::path> tokenizer_dir;  // tokenizer.json (+ tokenizer_config.json) to copy
  FILE* log = stderr;                            // progress lines (null: silent)
};

struct SynthResult {
  uint64_t bytes = 0;  // tensor data written
  size_t n_tensors = 0, n_shards = 0;
  double seconds = 0;  // generation and writing, including the final sync
};

SynthResult synth_write(const nlohmann::json& config, const SynthOptions& opt);

// The largest token id a tokenizer.json defines (model vocab and added tokens); throws naming the file.
int64_t tokenizer_max_id(const std::filesystem::path& tokenizer_json);
// The first of the candidate directories whose tokenizer.json exists and whose ids all fit [0, vocab_size);
// nullopt when none does.
std::optional<std::filesystem::path> synth_pick_tokenizer(const std::vector<std::filesystem::path>& candidates,
                                                          int64_t vocab_size);

}  // namespace hlwq
