#include "io/compressed_tensors.h"


namespace hlwq {
using json = nlohmann::json;

std::string ct_base_name(const std::string& n) {
  static constexpr std::string_view kSuffix = ".weight";
  if (n.size() > kSuffix.size() && n.compare(n.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
    return n.substr(0, n.size() - kSuffix.size());
  return n;
}

bool ct_name_is_kept(const std::string& name, bool quantize_lm_head) {
  // One test per SPEC §3 keep-list entry; "mlp.gate.weight" is the router, not gate_proj. Plain string tests,
  // not std::regex: tensor names come from the file, and std::regex recurses per character (a 40,000-character
  // name overflowed the stack).
  const std::string_view n = name;
  auto has = [&](std::string_view p) { return n.find(p) != std::string_view::npos; };
  auto starts = [&](std::string_view p) { return n.starts_with(p); };
  auto ends = [&](std::string_view p) { return n.ends_with(p); };
  if (!quantize_lm_head && (name == "lm_head.weight" || starts("lm_head."))) return true;
  return starts("embed_tokens.") || has(".embed_tokens.") || n == "mlp.gate.weight" || ends(".mlp.gate.weight") ||
         has("shared_expert_gate.") || has(".in_proj_a.") || has(".in_proj_b.") ||
         has(".in_proj_ba.") ||  // Qwen3-Next fuses in_proj_a and in_proj_b into one [2 * n_v_heads, H] Linear
         has(".conv1d.") || ends(".A_log") || ends(".dt_bias") || ends("norm.weight") || ends("norm.bias") ||
         starts("model.visual.") || starts("visual.") || starts("mtp.") || has(".mtp.");
}

bool ct_shape_is_marlin(int64_t out, int64_t in) { return out > 0 && in > 0 && out % 64 == 0 && in % 128 == 0; }

json ct_quantization_config(const std::vector<std::string>& extra_ignore, bool quantize_lm_head,
                            const std::vector<std::string>& extra_patterns) {
  json ignore = json::array();
  if (!quantize_lm_head) ignore.push_back("lm_head");
  for (const char* p : {"re:.*embed_tokens$", "re:.*visual.*", "re:.*mlp\\.gate$", "re:.*shared_expert_gate$",
                        "re:.*\\.in_proj_a$", "re:.*\\.in_proj_b$"})
    ignore.push_back(p);
  for (const auto& p : extra_patterns) ignore.push_back(p);  // after the seed's, which must stay byte-identical
  for (const auto& n : extra_ignore) ignore.push_back(n);
  json weights = {{"num_bits", 4},       {"type", "int"},      {"symmetric", true},
                  {"strategy", "group"}, {"group_size", kCtGroupSize}, {"dynamic", false},
                  {"actorder", nullptr}, {"observer", "minmax"}, {"block_structure", nullptr}};
  return {{"quant_method", "compressed-tensors"},
          {"format", "pack-quantized"},
          {"quantization_status", "compressed"},
          {"global_compression_ratio", 4.0},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", nullptr},
              {"output_activations", nullptr}}}}},
          {"ignore", ignore},
          {"kv_cache_scheme", nullptr},
          {"sparsity_config", json::object()}};
}

}  // namespace hlwq
