#include "io/compressed_tensors.h"

#include <regex>

namespace hlwq {
using json = nlohmann::json;

std::string ct_base_name(const std::string& n) {
  static constexpr std::string_view kSuffix = ".weight";
  if (n.size() > kSuffix.size() && n.compare(n.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
    return n.substr(0, n.size() - kSuffix.size());
  return n;
}

bool ct_name_is_kept(const std::string& name, bool quantize_lm_head) {
  // One pattern per SPEC §3 keep-list entry; "mlp.gate.weight" is the router, not gate_proj.
  static const std::regex kKeep(
      R"((^|\.)embed_tokens\.|(^|\.)mlp\.gate\.weight$|shared_expert_gate\.|\.in_proj_a\.|\.in_proj_b\.|)"
      R"(\.in_proj_ba\.|)"  // Qwen3-Next fuses in_proj_a and in_proj_b into one [2 * n_v_heads, H] Linear
      R"(\.conv1d\.|\.A_log$|\.dt_bias$|norm\.weight$|norm\.bias$|^model\.visual\.|^visual\.|^mtp\.|\.mtp\.)",
      std::regex::ECMAScript | std::regex::optimize);
  if (!quantize_lm_head && (name == "lm_head.weight" || name.rfind("lm_head.", 0) == 0)) return true;
  return std::regex_search(name, kKeep);
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
