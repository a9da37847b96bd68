// Config of a synthetic checkpoint: the built-in Qwen3.6-35B-A3B target, --like resolution, --layers.
#include "synth/synth_config.h"

#include <fmt/format.h>

#include "core/error.h"
#include "io/read_file.h"

namespace hlwq {
namespace {

namespace fs = std::filesystem;

// The object holding the text model's fields: text_config when nested, else the top level.
nlohmann::json& text_part(nlohmann::json& config) {
  if (config.contains("text_config") && config["text_config"].is_object()) return config["text_config"];
  return config;
}

nlohmann::json read_config(const fs::path& file) { return read_json_file(file); }

}  // namespace

nlohmann::json synth_qwen36_config() {
  // SPEC §1/§5: 40 layers (full attention every 4th), hidden 2048, 256 experts of width 512 with 8 active plus a
  // shared expert of width 512, Gated DeltaNet 16 key / 32 value heads of 128, attention 16 query / 2 KV heads of
  // 256 with a quarter of each head rotated, vocab 248,320, context 262,144. The mrope sections sum to
  // rotary_dim / 2 = 256 · 0.25 / 2 = 32.
  std::vector<std::string> types;
  for (int i = 0; i < 40; ++i) types.push_back((i + 1) % 4 == 0 ? "full_attention" : "linear_attention");
  nlohmann::json text = {
      {"model_type", "qwen3_5_moe_text"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"bos_token_id", nullptr},
      {"eos_token_id", 248046},
      {"full_attention_interval", 4},
      {"head_dim", 256},
      {"hidden_act", "silu"},
      {"hidden_size", 2048},
      {"initializer_range", 0.02},
      {"layer_types", types},
      {"linear_conv_kernel_dim", 4},
      {"linear_key_head_dim", 128},
      {"linear_num_key_heads", 16},
      {"linear_num_value_heads", 32},
      {"linear_value_head_dim", 128},
      {"max_position_embeddings", 262144},
      {"moe_intermediate_size", 512},
      {"num_attention_heads", 16},
      {"num_experts", 256},
      {"num_experts_per_tok", 8},
      {"num_hidden_layers", 40},
      {"num_key_value_heads", 2},
      {"output_router_logits", false},
      {"pad_token_id", nullptr},
      {"partial_rotary_factor", 0.25},
      {"rms_norm_eps", 1e-6},
      {"rope_parameters",
       {{"mrope_interleaved", true},
        {"mrope_section", {11, 11, 10}},
        {"partial_rotary_factor", 0.25},
        {"rope_theta", 10000000.0},
        {"rope_type", "default"}}},
      {"router_aux_loss_coef", 0.001},
      {"shared_expert_intermediate_size", 512},
      {"tie_word_embeddings", false},
      {"use_cache", true},
      {"vocab_size", 248320},
  };
  return {
      {"architectures", {"Qwen3_5MoeForConditionalGeneration"}},
      {"model_type", "qwen3_5_moe"},
      {"dtype", "bfloat16"},
      {"image_token_id", 248056},
      {"video_token_id", 248057},
      {"vision_start_token_id", 248053},
      {"vision_end_token_id", 248054},
      {"text_config", text},
      {"tie_word_embeddings", false},
  };
}

nlohmann::json synth_like_config(const std::string& like, const std::vector<fs::path>& search_dirs) {
  if (like == kSynthQwen36) return synth_qwen36_config();
  HLWQ_CHECK(!like.empty(), "--like is empty: name {}, a config.json file or a model directory", kSynthQwen36);
  std::vector<fs::path> tried;
  auto from = [&](const fs::path& p, nlohmann::json& out) {
    tried.push_back(p);
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return out = read_config(p), true;
    if (fs::is_directory(p, ec) && fs::is_regular_file(p / "config.json", ec))
      return out = read_config(p / "config.json"), true;
    return false;
  };
  nlohmann::json config;
  if (from(fs::path(like), config)) return config;
  if (fs::path(like).is_relative())
    for (const fs::path& d : search_dirs)
      if (from(d / like, config)) return config;
  std::string list;
  for (const fs::path& p : tried) list += (list.empty() ? "" : ", ") + p.string();
  fail("--like {}: not {} and no config.json found (tried {})", like, kSynthQwen36, list);
}

void synth_strip_quantization(nlohmann::json& config) {
  config.erase("quantization_config");
  text_part(config).erase("quantization_config");
}

void synth_set_layers(nlohmann::json& config, int64_t n_layers) {
  HLWQ_CHECK(n_layers > 0, "--layers must be at least 1, got {}", n_layers);
  nlohmann::json& t = text_part(config);
  std::vector<std::string> pattern;
  if (t.contains("layer_types") && t["layer_types"].is_array() && !t["layer_types"].empty()) {
    pattern = t["layer_types"].get<std::vector<std::string>>();
  } else {
    const int64_t interval = t.value("full_attention_interval", int64_t(4));
    HLWQ_CHECK(interval > 0, "config: full_attention_interval must be positive, got {}", interval);
    for (int64_t i = 0; i < interval; ++i) pattern.push_back(i + 1 == interval ? "full_attention" : "linear_attention");
  }
  std::vector<std::string> types;
  for (int64_t i = 0; i < n_layers; ++i) types.push_back(pattern[size_t(i) % pattern.size()]);
  t["num_hidden_layers"] = n_layers;
  t["layer_types"] = types;
}

}  // namespace hlwq
