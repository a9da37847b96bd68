#include "io/checkpoint_summary.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/progress.h"
#include "io/hlwq_format.h"
#include "io/tensor_kind.h"

namespace hlwq {
namespace {

constexpr int64_t kCacheSizes[] = {1, 2, 4, 8, 16, 32, 64};

// Reads 1-9 decimal digits at pos (advancing it); false when there are none or too many for a real index.
bool read_index(const std::string& s, size_t& pos, int64_t& out) {
  size_t e = pos;
  while (e < s.size() && e - pos < 10 && s[e] >= '0' && s[e] <= '9') ++e;
  if (e == pos || e - pos > 9) return false;
  out = std::stoll(s.substr(pos, e - pos));
  pos = e;
  return true;
}

// Scans name for ".layers.L.mlp.experts." followed by "E." (per-expert, expert >= 0) or by a fused tensor name
// at the end (expert = -1). Plain string scanning, linear in the name: tensor names come from the file and can be
// any length, which std::regex (recursive) does not survive.
bool match_expert(const std::string& name, int64_t& layer, int64_t& expert) {
  static constexpr std::string_view kLayers = ".layers.", kExperts = ".mlp.experts.";
  for (size_t at = name.find(kLayers); at != std::string::npos; at = name.find(kLayers, at + 1)) {
    size_t p = at + kLayers.size();
    if (!read_index(name, p, layer) || name.compare(p, kExperts.size(), kExperts) != 0) continue;
    p += kExperts.size();
    size_t q = p;
    if (read_index(name, q, expert) && q < name.size() && name[q] == '.') return true;
    const std::string_view rest = std::string_view(name).substr(p);
    if (rest == "gate_up_proj" || rest == "down_proj") {
      expert = -1;
      return true;
    }
  }
  return false;
}

}  // namespace

uint64_t CheckpointSummary::resident_with_cache(int64_t slots, int64_t n_cpu_moe) const {
  const int64_t s = std::min(slots, n_experts);
  const int64_t gpu_layers = n_moe_layers - std::clamp<int64_t>(n_cpu_moe, 0, n_moe_layers);
  return resident_bytes + uint64_t(s) * uint64_t(gpu_layers) * expert_bytes;
}

CheckpointSummary summarize_checkpoint(const ModelConfig& cfg, const Checkpoint& ck) {
  CheckpointSummary s;
  std::map<std::pair<int64_t, int64_t>, uint64_t> per_expert;  // (layer, expert) -> bytes
  std::map<int64_t, uint64_t> fused_per_layer;
  for (const auto& name : ck.names()) {
    const TensorEntry& e = ck.entry(name);
    const uint64_t b = e.end - e.begin;
    const TensorKind kind = tensor_kind_of(name);
    const std::string k(tensor_kind_name(kind));
    s.kinds[k].n_tensors++;
    s.kinds[k].bytes += b;
    s.total_bytes += b;
    int64_t layer = 0, expert = 0;
    if (match_expert(name, layer, expert)) {
      if (expert >= 0) per_expert[{layer, expert}] += b;
      else fused_per_layer[layer] += b;
    } else if (tensor_kind_is_text(kind)) {
      s.resident_bytes += b;
    }
  }
  s.n_experts = cfg.n_experts;
  std::map<int64_t, bool> moe_layers;
  for (const auto& [key, b] : per_expert) {
    s.expert_bytes = std::max(s.expert_bytes, b);
    moe_layers[key.first] = true;
  }
  for (const auto& [layer, b] : fused_per_layer) {
    s.expert_bytes = std::max(s.expert_bytes, b / uint64_t(std::max<int64_t>(cfg.n_experts, 1)));
    moe_layers[layer] = true;
  }
  s.n_moe_layers = int64_t(moe_layers.size());
  s.kv_bytes_per_1k_tokens =
      uint64_t(cfg.n_full_attention_layers() * 2 * cfg.n_kv_heads * cfg.head_dim * 2) * 1000;
  const int64_t conv_dim = 2 * cfg.linear_n_key_heads * cfg.linear_key_head_dim +
                           cfg.linear_n_value_heads * cfg.linear_value_head_dim;
  s.recurrent_state_bytes = uint64_t(cfg.n_linear_attention_layers()) *
                            uint64_t(cfg.linear_n_value_heads * cfg.linear_key_head_dim * cfg.linear_value_head_dim +
                                     conv_dim * std::max<int64_t>(cfg.linear_conv_kernel - 1, 0)) *
                            4;
  std::string overrides;  // mixed-width HLWQ (format version 2): the widths other than the top level's
  if (cfg.quant && cfg.quant->quant_method == "hlwq")
    for (const HlwqOverride& o :
         parse_hlwq_quantization_config(cfg.raw["quantization_config"], "config.json").overrides)
      overrides += fmt::format("; {}-bit for {}", o.bits, fmt::join(o.targets, ", "));
  s.scheme = !cfg.quant ? "unquantized"
             : cfg.quant->quant_method == "hlwq"
                 ? fmt::format("hlwq native, {}-bit Lloyd-Max codes{}, Hadamard blocks of {}", cfg.quant->num_bits,
                               overrides, cfg.quant->group_size)
                 : fmt::format("{} {} int{} group {} symmetric", cfg.quant->quant_method, cfg.quant->format,
                               cfg.quant->num_bits, cfg.quant->group_size);
  // Linears the ignore list names one by one (quantize --ignore, or Marlin's shape rule) and the file holds in
  // full precision; the fixed entries (lm_head, "re:" patterns) are the same in every checkpoint.
  int64_t kept = 0;
  if (cfg.quant)
    for (const std::string& n : cfg.quant->ignore)
      kept += !n.starts_with("re:") && n != "lm_head" && ck.has(n + ".weight");
  if (kept > 0) s.scheme += fmt::format("; {} Linear{} kept unquantized by name", kept, kept == 1 ? "" : "s");
  return s;
}

std::string format_checkpoint_summary(const ModelConfig& cfg, const CheckpointSummary& s, int64_t n_cpu_moe) {
  std::string o;
  o += fmt::format("architecture   {} ({}), {} layers: {} Gated DeltaNet + {} full attention\n",
                   model_arch_name(cfg.arch), cfg.model_type, cfg.n_layers, cfg.n_linear_attention_layers(),
                   cfg.n_full_attention_layers());
  o += fmt::format("sizes          hidden {}, vocab {}, heads {}/{} kv, head_dim {}, rotary {}\n", cfg.hidden_size,
                   cfg.vocab_size, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.rotary_dim());
  o += fmt::format("experts        {} routed ({} active, width {}), shared width {}\n", cfg.n_experts,
                   cfg.n_experts_active, cfg.moe_intermediate, cfg.shared_expert_intermediate);
  o += fmt::format("quantization   {}\n\n", s.scheme);
  o += fmt::format("{:<26} {:>9} {:>12}\n", "kind", "tensors", "bytes");
  for (const auto& [k, st] : s.kinds)
    o += fmt::format("{:<26} {:>9} {:>12}\n", k, st.n_tensors, format_bytes(double(st.bytes)));
  o += fmt::format("{:<26} {:>9} {:>12}\n\n", "total", "", format_bytes(double(s.total_bytes)));
  o += fmt::format("memory plan (weights resident on the GPU; experts per MoE layer cached, the rest in host RAM)\n");
  o += fmt::format("  one expert {}, {} MoE layers, non-expert resident set {}\n", format_bytes(double(s.expert_bytes)),
                   s.n_moe_layers, format_bytes(double(s.resident_bytes)));
  if (n_cpu_moe > 0)
    o += fmt::format("  --n-cpu-moe {}: the routed experts of MoE layers 0..{} stay in host RAM ({}) and run on the "
                     "CPU, which reads {} of them per token\n", n_cpu_moe, n_cpu_moe - 1,
                     format_bytes(double(uint64_t(n_cpu_moe * s.n_experts) * s.expert_bytes)),
                     format_bytes(double(uint64_t(n_cpu_moe * cfg.n_experts_active) * s.expert_bytes)));
  o += fmt::format("  {:>16} {:>14}\n", "expert cache", "resident");
  for (int64_t c : kCacheSizes)
    if (c < s.n_experts)
      o += fmt::format("  {:>16} {:>14}\n", c, format_bytes(double(s.resident_with_cache(c, n_cpu_moe))));
  o += fmt::format("  {:>16} {:>14}\n", fmt::format("all ({})", s.n_experts),
                   format_bytes(double(s.resident_with_cache(s.n_experts, n_cpu_moe))));
  o += fmt::format("  KV cache (bf16) per 1k tokens {}; recurrent state per sequence {} (fp32)\n",
                   format_bytes(double(s.kv_bytes_per_1k_tokens)), format_bytes(double(s.recurrent_state_bytes)));
  return o;
}

namespace {

// JSON keys are identifiers: "linear attention (GDN)" -> "linear_attention_gdn".
std::string identifier(const std::string& words) {
  std::string id;
  for (char ch : words) {
    if (std::isalnum(static_cast<unsigned char>(ch))) id += char(std::tolower(static_cast<unsigned char>(ch)));
    else if (!id.empty() && id.back() != '_') id += '_';
  }
  while (!id.empty() && id.back() == '_') id.pop_back();
  return id;
}

}  // namespace

nlohmann::json checkpoint_summary_json(const ModelConfig& cfg, const CheckpointSummary& s, int64_t n_cpu_moe) {
  nlohmann::json kinds = nlohmann::json::object();
  for (const auto& [k, st] : s.kinds) kinds[identifier(k)] = {{"tensors", st.n_tensors}, {"bytes", st.bytes}};
  nlohmann::json plan = nlohmann::json::array();  // one row per cache size; the last caches every expert
  for (int64_t c : kCacheSizes)
    if (c < s.n_experts)
      plan.push_back({{"cached_experts", c}, {"resident_bytes", s.resident_with_cache(c, n_cpu_moe)}});
  plan.push_back({{"cached_experts", s.n_experts}, {"resident_bytes", s.resident_with_cache(s.n_experts, n_cpu_moe)}});
  return {{"architecture", model_arch_name(cfg.arch)},
          {"model_type", cfg.model_type},
          {"layers", {{"total", cfg.n_layers},
                      {"linear_attention", cfg.n_linear_attention_layers()},
                      {"full_attention", cfg.n_full_attention_layers()}}},
          {"hidden_size", cfg.hidden_size},
          {"vocab_size", cfg.vocab_size},
          {"experts", {{"routed", cfg.n_experts}, {"active", cfg.n_experts_active},
                       {"intermediate", cfg.moe_intermediate}, {"shared_intermediate", cfg.shared_expert_intermediate}}},
          {"quantization", s.scheme},
          {"kinds", kinds},
          {"total_bytes", s.total_bytes},
          {"memory_plan", {{"expert_bytes", s.expert_bytes},
                           {"moe_layers", s.n_moe_layers},
                           {"non_expert_resident_bytes", s.resident_bytes},
                           {"n_cpu_moe", n_cpu_moe},
                           {"cpu_expert_bytes_per_token", uint64_t(n_cpu_moe * cfg.n_experts_active) * s.expert_bytes},
                           {"resident_bytes_by_expert_cache_size", plan},
                           {"kv_cache_bytes_per_1k_tokens_bf16", s.kv_bytes_per_1k_tokens},
                           {"recurrent_state_bytes_per_sequence", s.recurrent_state_bytes}}}};
}

}  // namespace hlwq
