// Tensor list and value generators of synthetic checkpoints (see synth_tensors.h).
#include "synth/synth_tensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "core/dtype.h"
#include "core/error.h"
#include "io/compressed_tensors.h"
#include "model/tensor_names.h"
#include "quant/ct_plan.h"

namespace hlwq {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a: the same name hash on every platform (std::hash is not specified).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// The standard normal's quantiles at the 65,536 midpoints (k + 0.5) / 65536: a 16-bit code k picks one, so one
// 64-bit hash gives four normal values (|z| ≤ 4.3). Found by bisection on Φ(x) = erfc(−x/√2)/2 (40 halvings of
// [−8, 0] leave an error far below bf16's resolution); the upper half mirrors the lower one.
std::vector<float> normal_quantiles() {
  std::vector<float> z(65536);
  for (int k = 0; k < 32768; ++k) {
    const double p = (k + 0.5) / 65536;
    double lo = -8, hi = 0;
    for (int it = 0; it < 40; ++it) {
      const double mid = 0.5 * (lo + hi);
      (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
    }
    z[size_t(k)] = float(0.5 * (lo + hi));
    z[size_t(65535 - k)] = -z[size_t(k)];
  }
  return z;
}

// bf16 codes of mean + std · z for every 16-bit code, one table per Gaussian kind, built once (immutable).
struct GaussTables {
  std::vector<uint16_t> normal, norm_plain, conv, dt_bias;  // [65536] each
  GaussTables() {
    const std::vector<float> z = normal_quantiles();
    auto table = [&](float mean, float std) {
      std::vector<uint16_t> t(65536);
      for (size_t k = 0; k < t.size(); ++k) t[k] = f32_to_bf16(mean + std * z[k]);
      return t;
    };
    normal = table(0, 0.02f), norm_plain = table(1, 0.02f), conv = table(0, 0.3f), dt_bias = table(1, 0.1f);
  }
};
const GaussTables& gauss_tables() {
  static const GaussTables t;
  return t;
}

inline float unit_uniform(uint64_t h) { return float(h >> 40) * (1.0f / 16777216.0f); }  // [0, 1), 24 bits

SynthValues values_of(const std::string& name) {
  auto ends = [&](std::string_view s) { return name.ends_with(s); };
  if (ends(".weight_packed")) return SynthValues::int4_packed;
  if (ends(".weight_scale")) return SynthValues::int4_scale;
  if (ends(".weight_shape")) return SynthValues::int4_shape;
  if (ends("linear_attn.A_log")) return SynthValues::a_log;
  if (ends("linear_attn.dt_bias")) return SynthValues::dt_bias;
  if (ends("linear_attn.conv1d.weight")) return SynthValues::conv;
  if (ends("linear_attn.norm.weight")) return SynthValues::norm_plain;  // norm_gated: y · w, not y · (1 + w)
  if (ends("layernorm.weight") || ends("q_norm.weight") || ends("k_norm.weight") || ends("model.norm.weight") ||
      ends("language_model.norm.weight"))
    return SynthValues::norm_centred;
  return SynthValues::normal;
}

}  // namespace

SynthFormat parse_synth_format(const std::string& s) {
  if (s == "bf16") return SynthFormat::bf16;
  if (s == "ct-int4") return SynthFormat::ct_int4;
  fail("--format {}: expected bf16 or ct-int4", s);
}

const char* synth_format_name(SynthFormat f) { return f == SynthFormat::bf16 ? "bf16" : "ct-int4"; }

std::vector<TensorSpec> synth_bf16_specs(const ModelConfig& cfg) {
  HLWQ_CHECK(cfg.arch == ModelArch::qwen3_5_moe, "synth writes Qwen3.5/3.6-MoE (qwen3_5_moe) checkpoints; the "
             "config describes {}", model_arch_name(cfg.arch));
  const std::string prefix = cfg.nested ? "model.language_model." : "model.";
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size;
  std::vector<TensorSpec> s;
  auto add = [&](std::string name, Shape shape) { s.push_back({std::move(name), DType::BF16, std::move(shape)}); };
  auto add_table = [&](const std::string& p, const auto& table) {
    for (const auto& l : table.linears) add(p + l.name + ".weight", {l.out, l.in});
    for (const auto& v : table.vectors) add(p + v.name, v.shape);
  };
  add(prefix + kEmbedTokens, {V, H});
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string p = fmt::format("{}layers.{}.", prefix, l);
    add_table(p, layer_norm_table(cfg));
    if (cfg.layer_types[size_t(l)] == LayerKind::linear_attention) add_table(p, gdn_table(cfg));
    else add_table(p, attention_table(cfg));
    add_table(p, moe_table(cfg));
    const auto expert = expert_table(H, cfg.moe_intermediate);
    for (int64_t e = 0; e < cfg.n_experts; ++e) add_table(fmt::format("{}mlp.experts.{}.", p, e), expert);
    if (cfg.shared_expert_intermediate > 0)
      add_table(p + "mlp.shared_expert.", expert_table(H, cfg.shared_expert_intermediate));
  }
  add(prefix + kFinalNorm, {H});
  if (!cfg.tie_word_embeddings) add(std::string(kLmHead) + ".weight", {V, H});
  std::sort(s.begin(), s.end(), [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
  return s;
}

SynthPlan synth_plan(const ModelConfig& cfg, SynthFormat format) {
  const std::vector<TensorSpec> bf16 = synth_bf16_specs(cfg);
  SynthPlan plan;
  if (format == SynthFormat::bf16) {
    for (const TensorSpec& t : bf16) plan.tensors.push_back({t, values_of(t.name)});
    return plan;
  }
  // The plan `hlwq quantize` makes for this list: which Linears are packed, the output names and the ignore list.
  std::vector<PlanInput> inputs;
  for (const TensorSpec& t : bf16) inputs.push_back({t.name, t.dtype, t.shape, t.nbytes(), "synthetic"});
  PlanOptions po;
  po.language_model_only = true;
  const CtPlan ct = plan_ct_int4(cfg, inputs, "synthetic", po);
  std::map<std::string, std::pair<int64_t, int64_t>> matrix;  // weight_shape name -> [out, in]
  for (const PlanItem& it : ct.items)
    if (it.action == PlanAction::quantize) matrix[it.out_name + ".weight_shape"] = {it.out_shape[0], it.out_shape[1]};
  for (const TensorSpec& t : ct_output_specs(ct)) {
    SynthTensor st{t, values_of(t.name)};
    if (st.values == SynthValues::int4_shape) {
      const auto it = matrix.find(t.name);
      HLWQ_CHECK(it != matrix.end(), "synth: no quantized matrix for {}", t.name);
      st.out = it->second.first, st.in = it->second.second;
    }
    plan.tensors.push_back(std::move(st));
  }
  plan.quantization_config = ct_quantization_config(ct.extra_ignore, false, ct.extra_ignore_patterns);
  return plan;
}

uint64_t synth_tensor_seed(uint64_t seed, const std::string& name) { return splitmix64(seed ^ fnv1a(name)); }

void synth_fill(const SynthTensor& t, uint64_t tensor_seed, uint64_t first, uint64_t n, void* dst) {
  // Element i takes bits [w·(i % per), w·(i % per + 1)) of the hash of counter i / per: four 16-bit codes or two
  // 32-bit words per hash, and still a function of i alone wherever a range starts.
  auto from_hash = [&](auto* d, unsigned per, auto value) {
    const unsigned w = 64 / per;
    for (uint64_t i = first, end = first + n; i < end;) {
      const uint64_t h = splitmix64(tensor_seed + i / per);
      for (unsigned j = unsigned(i % per); j < per && i < end; ++j, ++i) *d++ = value(h >> (w * j));
    }
  };
  auto gauss = [&](const std::vector<uint16_t>& table) {
    from_hash(static_cast<uint16_t*>(dst), 4, [&](uint64_t bits) { return table[bits & 0xffff]; });
  };
  auto bf16 = [&](auto value) {  // one hash per element: only small tensors use these kinds
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (uint64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(value(splitmix64(tensor_seed + first + i)));
  };
  const GaussTables& g = gauss_tables();
  switch (t.values) {
    case SynthValues::normal:
    case SynthValues::norm_centred:
      return gauss(g.normal);
    case SynthValues::norm_plain:
      return gauss(g.norm_plain);
    case SynthValues::conv:
      return gauss(g.conv);
    case SynthValues::dt_bias:
      return gauss(g.dt_bias);
    case SynthValues::a_log:
      return bf16([](uint64_t h) { return std::log(1.0f + 15.0f * unit_uniform(h)); });
    case SynthValues::int4_scale:
      return bf16([](uint64_t h) { return 0.02f / 7 * (0.75f + 0.5f * unit_uniform(h)); });
    case SynthValues::int4_packed:
      return from_hash(static_cast<uint32_t*>(dst), 2, [](uint64_t bits) { return uint32_t(bits); });
    case SynthValues::int4_shape: {
      HLWQ_CHECK(t.spec.dtype == DType::I64 && first + n <= 2, "{}: weight_shape is I64 [2]", t.spec.name);
      const int64_t v[2] = {t.out, t.in};
      std::memcpy(dst, v + first, n * sizeof(int64_t));
      return;
    }
  }
}

}  // namespace hlwq
