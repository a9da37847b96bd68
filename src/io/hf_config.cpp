#include "io/hf_config.h"

#include <filesystem>
#include <fstream>
#include <cmath>
#include <iterator>

#include "core/error.h"
#include "io/hlwq_format.h"
#include "io/json_util.h"

namespace hlwq {
using json = nlohmann::json;

std::string_view model_arch_name(ModelArch a) {
  switch (a) {
    case ModelArch::qwen3_5_moe: return "qwen3_5_moe";
    case ModelArch::qwen3_next: return "qwen3_next";
    case ModelArch::qwen3_moe: return "qwen3_moe";
  }
  return "?";
}

namespace {

struct Reader {
  const json& j;
  std::string where;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t int_(const char* k) const {
    HLWQ_CHECK(has(k), "{}: missing required field '{}'", where, k);
    HLWQ_CHECK(j[k].is_number_integer(), "{}: field '{}' must be an integer, got {}", where, k, json_brief(j[k]));
    int64_t v = j[k].get<int64_t>();
    HLWQ_CHECK(v >= 0, "{}: field '{}' must be non-negative, got {}", where, k, v);
    return v;
  }
  int64_t int_or(const char* k, int64_t d) const { return has(k) ? int_(k) : d; }
  double num(const char* k) const {
    HLWQ_CHECK(has(k), "{}: missing required field '{}'", where, k);
    HLWQ_CHECK(j[k].is_number(), "{}: field '{}' must be a number, got {}", where, k, json_brief(j[k]));
    return j[k].get<double>();
  }
  double num_or(const char* k, double d) const { return has(k) ? num(k) : d; }
  bool bool_or(const char* k, bool d) const {
    if (!has(k)) return d;
    HLWQ_CHECK(j[k].is_boolean(), "{}: field '{}' must be true/false, got {}", where, k, json_brief(j[k]));
    return j[k].get<bool>();
  }
  std::string str_or(const char* k, const std::string& d) const {
    if (!has(k)) return d;
    HLWQ_CHECK(j[k].is_string(), "{}: field '{}' must be a string, got {}", where, k, json_brief(j[k]));
    return j[k].get<std::string>();
  }
  // A field that must have one specific value if present (anything else changes the math).
  template <typename T>
  void require_if_present(const char* k, const T& want) const {
    if (!has(k)) return;
    HLWQ_CHECK(j[k] == json(want), "{}: field '{}' = {} is not supported (hlwq implements {})", where, k,
               json_brief(j[k]), json(want).dump());
  }
};

QuantConfig parse_quant_config(const json& q, const std::string& where) {
  QuantConfig c;
  Reader r{q, where + ": quantization_config"};
  c.quant_method = r.str_or("quant_method", "");
  if (c.quant_method == kHlwqQuantMethod) {  // native HLWQ codes: the block is validated by io/hlwq_format
    const HlwqFormat f = parse_hlwq_quantization_config(q, where);
    c.format = kHlwqFormatName;
    c.num_bits = f.bits;
    c.group_size = kHlwqBlock;
    c.ignore = f.ignore;
    return c;
  }
  HLWQ_CHECK(c.quant_method == "compressed-tensors",
             "{}: quant_method '{}' is not supported (hlwq reads compressed-tensors and hlwq)", r.where,
             c.quant_method);
  c.format = r.str_or("format", "");
  HLWQ_CHECK(c.format == "pack-quantized", "{}: format '{}' is not supported (hlwq reads pack-quantized)", r.where,
             c.format);
  HLWQ_CHECK(q.contains("config_groups") && q["config_groups"].is_object() && !q["config_groups"].empty(),
             "{}: missing config_groups", r.where);
  for (auto it = q["config_groups"].begin(); it != q["config_groups"].end(); ++it) {
    const std::string gw = r.where + ".config_groups." + it.key();
    HLWQ_CHECK(it.value().contains("weights") && it.value()["weights"].is_object(), "{}: missing weights", gw);
    Reader w{it.value()["weights"], gw + ".weights"};
    c.num_bits = int(w.int_("num_bits"));
    HLWQ_CHECK(c.num_bits == 4, "{}: num_bits {} is not supported (hlwq reads 4)", w.where, c.num_bits);
    HLWQ_CHECK(w.str_or("type", "int") == "int", "{}: type must be int", w.where);
    c.symmetric = w.bool_or("symmetric", true);
    HLWQ_CHECK(c.symmetric, "{}: asymmetric (zero-point) INT4 is not supported", w.where);
    HLWQ_CHECK(w.str_or("strategy", "group") == "group", "{}: strategy '{}' is not supported (hlwq reads group)",
               w.where, w.str_or("strategy", ""));
    c.group_size = int(w.int_("group_size"));
    HLWQ_CHECK(c.group_size == 128, "{}: group_size {} is not supported (hlwq reads 128)", w.where, c.group_size);
    HLWQ_CHECK(!w.bool_or("dynamic", false), "{}: dynamic quantization is not supported", w.where);
    if (w.has("actorder"))
      HLWQ_CHECK(w.j["actorder"] == "static" || w.j["actorder"] == false,
                 "{}: actorder {} reorders groups, which hlwq does not read", w.where, json_brief(w.j["actorder"]));
    HLWQ_CHECK(!it.value().contains("input_activations") || it.value()["input_activations"].is_null(),
               "{}: activation quantization is not supported (hlwq reads W4A16)", gw);
  }
  if (q.contains("ignore") && q["ignore"].is_array())
    for (const auto& s : q["ignore"])
      if (s.is_string()) c.ignore.push_back(s.get<std::string>());
  return c;
}

std::vector<int64_t> parse_eos(const json& v) {
  std::vector<int64_t> out;
  if (v.is_number_integer()) out.push_back(v.get<int64_t>());
  if (v.is_array())
    for (const auto& x : v)
      if (x.is_number_integer()) out.push_back(x.get<int64_t>());
  return out;
}

// Every dimension bounded (zero-size ones divide by zero in the kernels; 2^62 layers would size gigabytes of
// per-layer state before any tensor is looked at) and every product that sizes a buffer kept well inside
// 64 bits. The bounds are ~10x past the largest models of these families.
void check_dimensions(const ModelConfig& c, const std::string& where) {
  struct Dim {
    const char* field;
    int64_t value, lo, hi;
  };
  const bool gdn = c.arch != ModelArch::qwen3_moe;
  std::vector<Dim> dims = {
      {"vocab_size", c.vocab_size, 1, int64_t(1) << 24},
      {"hidden_size", c.hidden_size, 1, int64_t(1) << 17},
      {"num_hidden_layers", c.n_layers, 1, 1024},
      {"num_attention_heads", c.n_heads, 1, 4096},
      {"num_key_value_heads", c.n_kv_heads, 1, 4096},
      {"head_dim", c.head_dim, 1, 4096},
      {"num_experts", c.n_experts, 1, 1 << 16},
      {"num_experts_per_tok", c.n_experts_active, 1, 1024},
      {"moe_intermediate_size", c.moe_intermediate, 1, int64_t(1) << 17},
      {"max_position_embeddings", c.max_position_embeddings, 0, int64_t(1) << 24},
  };
  if (gdn) {
    dims.push_back({"shared_expert_intermediate_size", c.shared_expert_intermediate, 0, int64_t(1) << 17});
    dims.push_back({"linear_num_key_heads", c.linear_n_key_heads, 1, 4096});
    dims.push_back({"linear_num_value_heads", c.linear_n_value_heads, 1, 4096});
    dims.push_back({"linear_key_head_dim", c.linear_key_head_dim, 1, 4096});
    dims.push_back({"linear_value_head_dim", c.linear_value_head_dim, 1, 4096});
    dims.push_back({"linear_conv_kernel_dim", c.linear_conv_kernel, 1, 64});
  }
  for (const Dim& d : dims)
    HLWQ_CHECK(d.value >= d.lo && d.value <= d.hi, "{}: {} = {} is outside the supported range [{}, {}]", where,
               d.field, d.value, d.lo, d.hi);
  HLWQ_CHECK(c.head_dim * c.n_heads <= (int64_t(1) << 20) && c.n_experts * c.moe_intermediate <= (int64_t(1) << 26),
             "{}: attention width {} x {} or expert width {} x {} is too large", where, c.n_heads, c.head_dim,
             c.n_experts, c.moe_intermediate);
  HLWQ_CHECK(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0 && c.rms_norm_eps < 1,
             "{}: rms_norm_eps {} must be in (0, 1)", where, c.rms_norm_eps);
  HLWQ_CHECK(std::isfinite(c.rope_theta) && c.rope_theta > 0, "{}: rope_theta {} must be positive and finite", where,
             c.rope_theta);
}

}  // namespace

int64_t ModelConfig::n_full_attention_layers() const {
  int64_t n = 0;
  for (auto k : layer_types) n += k == LayerKind::full_attention;
  return n;
}
int64_t ModelConfig::n_linear_attention_layers() const { return n_layers - n_full_attention_layers(); }

ModelConfig parse_model_config(const json& top, const std::string& where) {
  HLWQ_CHECK(top.is_object(), "{}: not a JSON object", where);
  ModelConfig c;
  c.raw = top;
  c.model_type = Reader{top, where}.str_or("model_type", "");
  const json* tj = &top;
  std::string twhere = where;
  if (c.model_type == "qwen3_5_moe") {
    HLWQ_CHECK(top.contains("text_config") && top["text_config"].is_object(),
               "{}: model_type qwen3_5_moe needs a text_config object", where);
    tj = &top["text_config"];
    twhere = where + ": text_config";
    c.nested = true;
    c.arch = ModelArch::qwen3_5_moe;
  } else if (c.model_type == "qwen3_5_moe_text") {
    c.arch = ModelArch::qwen3_5_moe;
  } else if (c.model_type == "qwen3_next") {
    c.arch = ModelArch::qwen3_next;
  } else if (c.model_type == "qwen3_moe") {
    c.arch = ModelArch::qwen3_moe;
  } else {
    fail("{}: model_type '{}' is not supported (hlwq runs qwen3_5_moe, qwen3_5_moe_text, qwen3_next, qwen3_moe)",
         where, c.model_type);
  }
  Reader r{*tj, twhere};
  c.vocab_size = r.int_("vocab_size");
  c.hidden_size = r.int_("hidden_size");
  c.n_layers = r.int_("num_hidden_layers");
  // Bounded at once: layer_types below is sized from it (check_dimensions bounds everything else at the end).
  HLWQ_CHECK(c.n_layers >= 1 && c.n_layers <= 1024, "{}: num_hidden_layers = {} is outside the supported range [1, 1024]",
             twhere, c.n_layers);
  c.n_heads = r.int_("num_attention_heads");
  c.n_kv_heads = r.int_("num_key_value_heads");
  c.head_dim = r.int_or("head_dim", c.n_heads ? c.hidden_size / c.n_heads : 0);
  c.max_position_embeddings = r.int_or("max_position_embeddings", 0);
  c.rms_norm_eps = r.num_or("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.bool_or("tie_word_embeddings", Reader{top, where}.bool_or("tie_word_embeddings", false));
  r.require_if_present("hidden_act", std::string("silu"));
  r.require_if_present("attention_bias", false);
  HLWQ_CHECK(!r.has("rope_scaling"), "{}: rope_scaling {} is not supported", twhere, json_brief((*tj)["rope_scaling"]));
  HLWQ_CHECK(c.hidden_size > 0 && c.n_layers > 0 && c.vocab_size > 0 && c.n_heads > 0 && c.n_kv_heads > 0 &&
                 c.head_dim > 0,
             "{}: hidden_size, num_hidden_layers, vocab_size and head counts must be positive", twhere);
  HLWQ_CHECK(c.n_heads % c.n_kv_heads == 0, "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
             twhere, c.n_heads, c.n_kv_heads);

  // RoPE: rope_parameters (transformers 5) or top-level rope_theta / partial_rotary_factor (older exports).
  if (r.has("rope_parameters")) {
    Reader rp{(*tj)["rope_parameters"], twhere + ": rope_parameters"};
    const std::string rt = rp.str_or("rope_type", "default");
    HLWQ_CHECK(rt == "default", "{}: rope_type '{}' is not supported (hlwq implements default)", rp.where, rt);
    c.rope_theta = rp.num("rope_theta");
    c.partial_rotary_factor = rp.num_or("partial_rotary_factor", r.num_or("partial_rotary_factor", 1.0));
  } else {
    c.rope_theta = r.num_or("rope_theta", 10000.0);
    c.partial_rotary_factor = r.num_or("partial_rotary_factor", 1.0);
  }
  HLWQ_CHECK(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1.0,
             "{}: partial_rotary_factor {} must be in (0, 1]", twhere, c.partial_rotary_factor);
  HLWQ_CHECK(c.rotary_dim() % 2 == 0, "{}: rotary dimension {} (head_dim × partial_rotary_factor) must be even",
             twhere, c.rotary_dim());

  // MoE
  c.n_experts = r.int_("num_experts");
  c.n_experts_active = r.int_("num_experts_per_tok");
  c.moe_intermediate = r.int_("moe_intermediate_size");
  HLWQ_CHECK(c.n_experts > 0 && c.n_experts_active > 0 && c.n_experts_active <= c.n_experts,
             "{}: num_experts_per_tok {} must be in [1, num_experts {}]", twhere, c.n_experts_active, c.n_experts);
  if (c.arch == ModelArch::qwen3_moe) {
    c.norm_topk_prob = r.bool_or("norm_topk_prob", false);
    r.require_if_present("decoder_sparse_step", int64_t(1));
    if (r.has("mlp_only_layers"))
      HLWQ_CHECK((*tj)["mlp_only_layers"].empty(), "{}: mlp_only_layers (dense layers) is not supported", twhere);
    c.layer_types.assign(size_t(c.n_layers), LayerKind::full_attention);
  } else {
    // Qwen3.5/3.6 always renormalize the top-k weights; qwen3_next says so in norm_topk_prob.
    c.norm_topk_prob = c.arch == ModelArch::qwen3_next ? r.bool_or("norm_topk_prob", true) : true;
    c.shared_expert_intermediate = r.int_("shared_expert_intermediate_size");
    c.linear_n_key_heads = r.int_("linear_num_key_heads");
    c.linear_n_value_heads = r.int_("linear_num_value_heads");
    c.linear_key_head_dim = r.int_("linear_key_head_dim");
    c.linear_value_head_dim = r.int_("linear_value_head_dim");
    c.linear_conv_kernel = r.int_("linear_conv_kernel_dim");
    HLWQ_CHECK(c.linear_n_key_heads > 0 && c.linear_n_value_heads % c.linear_n_key_heads == 0,
               "{}: linear_num_value_heads {} is not a multiple of linear_num_key_heads {}", twhere,
               c.linear_n_value_heads, c.linear_n_key_heads);
    HLWQ_CHECK(c.linear_conv_kernel >= 1, "{}: linear_conv_kernel_dim must be >= 1", twhere);
    if (r.has("layer_types")) {
      const json& lt = (*tj)["layer_types"];
      HLWQ_CHECK(lt.is_array() && int64_t(lt.size()) == c.n_layers,
                 "{}: layer_types must list {} layers, got {}", twhere, c.n_layers, json_brief(lt));
      for (const auto& t : lt) {
        HLWQ_CHECK(t.is_string(), "{}: layer_types entry {} is not a string", twhere, json_brief(t));
        const std::string s = t.get<std::string>();
        if (s == "linear_attention") c.layer_types.push_back(LayerKind::linear_attention);
        else if (s == "full_attention") c.layer_types.push_back(LayerKind::full_attention);
        else fail("{}: layer type '{}' is not supported (linear_attention or full_attention)", twhere, s);
      }
    } else {
      const int64_t interval = r.int_or("full_attention_interval", 4);
      HLWQ_CHECK(interval > 0, "{}: full_attention_interval must be positive", twhere);
      for (int64_t i = 0; i < c.n_layers; ++i)
        c.layer_types.push_back((i + 1) % interval == 0 ? LayerKind::full_attention : LayerKind::linear_attention);
    }
  }
  if (r.has("eos_token_id")) c.eos_token_ids = parse_eos((*tj)["eos_token_id"]);
  else if (top.contains("eos_token_id")) c.eos_token_ids = parse_eos(top["eos_token_id"]);
  if (top.contains("quantization_config") && !top["quantization_config"].is_null())
    c.quant = parse_quant_config(top["quantization_config"], where);
  check_dimensions(c, twhere);
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  HLWQ_CHECK(std::filesystem::exists(path), "{}: missing config.json", model_dir);
  return parse_model_config(read_json_file(path), path);
}

}  // namespace hlwq
