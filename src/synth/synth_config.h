// The config.json of a synthetic checkpoint: the config of the model it imitates (`--like`), with the number of
// layers changed if asked. `--like` names a built-in target (qwen3.6-35b-a3b: Qwen3.6-35B-A3B's text model in its
// published ConditionalGeneration layout, values from SPEC §1/§5), a config.json file, or a model directory (given
// as a path, or as the name of a directory under one of the search directories, e.g. models/tiny-moe-dev).
// Invariants: the result parses with parse_model_config; it carries no quantization_config (the writer adds the
// one of the chosen format); with a new layer count, layer_types repeats the target's own pattern from layer 0
// (Qwen3.6: full attention every 4th layer, 3 Gated DeltaNet : 1 attention).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq {

inline constexpr const char* kSynthQwen36 = "qwen3.6-35b-a3b";

// Qwen3.6-35B-A3B's config.json (nested text_config, no vision_config: synth writes no vision tower).
nlohmann::json synth_qwen36_config();

// Resolves `like` as described above; search_dirs are tried in order for a bare model name. Throws naming `like`
// and what was tried when nothing matches.
nlohmann::json synth_like_config(const std::string& like, const std::vector<std::filesystem::path>& search_dirs);

// Sets the text model's num_hidden_layers to n_layers (> 0) and layer_types to the target's pattern repeated;
// removes quantization_config. The target must state layer_types or full_attention_interval (SPEC §5 default 4).
void synth_set_layers(nlohmann::json& config, int64_t n_layers);

// Removes quantization_config (a `--like` of a quantized checkpoint describes the same model).
void synth_strip_quantization(nlohmann::json& config);

}  // namespace hlwq
