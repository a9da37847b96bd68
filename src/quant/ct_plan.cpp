#include "quant/ct_plan.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include "core/error.h"
#include "io/compressed_tensors.h"
#include "io/hlwq_format.h"
#include "io/tensor_kind.h"

namespace hlwq {

std::string_view tensor_role_name(TensorRole r) {
  switch (r) {
    case TensorRole::expert: return "routed experts";
    case TensorRole::linear: return "other linear";
    case TensorRole::other: return "norms/embed/router/misc";
    case TensorRole::visual: return "visual";
    case TensorRole::mtp: return "mtp";
  }
  return "?";
}

namespace {

bool is_float(DType t) { return t == DType::BF16 || t == DType::F16 || t == DType::F32; }

bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// name without `suffix` when it ends with one of `suffixes`, else nullopt.
std::optional<std::string_view> strip_one(std::string_view name, std::initializer_list<std::string_view> suffixes) {
  for (std::string_view s : suffixes)
    if (name.ends_with(s)) return name.substr(0, name.size() - s.size());
  return std::nullopt;
}

// vLLM fusion group of a quantizable 2-D weight name, "" when it stands alone. Plain string tests (names come
// from the file; std::regex recursed per character and overflowed the stack on a 40,000-character name):
//   P.mlp.experts.N.{gate,up,down}_proj.weight -> P.mlp.experts.*      P.self_attn.{q,k,v}_proj.weight -> P.self_attn.qkv_proj
//   P.linear_attn.in_proj_{qkv,z}.weight -> P.linear_attn.in_proj_qkvz  P.{gate,up}_proj.weight -> P.gate_up_proj
std::string fusion_group(const std::string& name) {
  if (auto head = strip_one(name, {".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"})) {
    const size_t dot = head->rfind('.');
    if (dot != std::string_view::npos && dot + 1 < head->size() &&
        head->find_first_not_of("0123456789", dot + 1) == std::string_view::npos &&
        head->substr(0, dot).ends_with(".mlp.experts"))
      return std::string(head->substr(0, dot)) + ".*";
  }
  if (auto p = strip_one(name, {".q_proj.weight", ".k_proj.weight", ".v_proj.weight"}); p && p->ends_with(".self_attn"))
    return std::string(*p) + ".qkv_proj";
  if (auto p = strip_one(name, {".in_proj_qkv.weight", ".in_proj_z.weight"}); p && p->ends_with(".linear_attn"))
    return std::string(*p) + ".in_proj_qkvz";
  if (auto p = strip_one(name, {".gate_proj.weight", ".up_proj.weight"})) return std::string(*p) + ".gate_up_proj";
  return "";
}

TensorRole role_of(const std::string& name) {
  switch (tensor_kind_of(name)) {
    case TensorKind::visual: return TensorRole::visual;
    case TensorKind::mtp: return TensorRole::mtp;
    case TensorKind::routed_expert: return TensorRole::expert;
    default: return TensorRole::other;  // becomes `linear` once the plan decides to quantize it
  }
}

}  // namespace

// The checkpoint holds every tensor its config implies, so an incomplete download, a stale index or a config
// for another model fails here, before anything is written, instead of producing an output that loads and then
// fails (or that replaces a good one with --force). Checked: embeddings, final norm, lm_head (unless tied) and
// per layer the two norms, the router, the layer type's attention output projection, the shared expert when
// configured, and every routed expert (fused 3-D or per-expert 2-D, floating point); no text tensor may name a
// layer past num_hidden_layers or an expert past num_experts. The experts' exact shapes are checked as they are
// planned; full tensor-by-tensor validation is the model loader's.
void check_complete(const ModelConfig& cfg, const Checkpoint& ck) {
  const std::vector<std::string> names = ck.names();
  HLWQ_CHECK(!names.empty(), "{}: the checkpoint holds no tensors", ck.dir());
  std::string prefix = "model.";
  for (const auto& n : names)
    if (n.starts_with("model.language_model.")) prefix = "model.language_model.";
  const int64_t H = cfg.hidden_size, E = cfg.n_experts;
  // shape: exact shape required; rank: only the number of dimensions (the planner checks those shapes itself).
  auto need = [&](const std::string& name, const Shape* shape, size_t rank = 0) {
    HLWQ_CHECK(ck.has(name), "{}: missing tensor {} (config.json: {} layers, {} experts); incomplete checkpoint?",
               ck.dir(), name, cfg.n_layers, E);
    const TensorEntry& e = ck.entry(name);
    HLWQ_CHECK(is_float(e.dtype), "{}: tensor {} must be floating point, got {}", ck.file_of(name), name,
               dtype_name(e.dtype));
    if (rank)
      HLWQ_CHECK(e.shape.size() == rank, "{}: tensor {} must have {} dimensions, got {}", ck.file_of(name), name, rank,
                 shape_str(e.shape));
    if (shape)
      HLWQ_CHECK(e.shape == *shape, "{}: tensor {} must be {} (from config.json), got {}", ck.file_of(name), name,
                 shape_str(*shape), shape_str(e.shape));
  };
  const Shape vh{cfg.vocab_size, H}, h{H}, router{E, H};
  need(prefix + "embed_tokens.weight", &vh);
  need(prefix + "norm.weight", &h);
  if (!cfg.tie_word_embeddings) need("lm_head.weight", &vh);
  for (int64_t L = 0; L < cfg.n_layers; ++L) {
    const std::string p = fmt::format("{}layers.{}.", prefix, L);
    need(p + "input_layernorm.weight", &h);
    need(p + "post_attention_layernorm.weight", &h);
    need(p + "mlp.gate.weight", &router);
    need(p + (cfg.layer_types[size_t(L)] == LayerKind::full_attention ? "self_attn.o_proj.weight"
                                                                       : "linear_attn.out_proj.weight"),
         nullptr);
    if (cfg.shared_expert_intermediate > 0)
      for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
        need(p + "mlp.shared_expert." + proj + ".weight", nullptr);
    if (ck.has(p + "mlp.experts.gate_up_proj") || ck.has(p + "mlp.experts.down_proj")) {
      need(p + "mlp.experts.gate_up_proj", nullptr, 3);
      need(p + "mlp.experts.down_proj", nullptr, 3);
    } else {
      for (int64_t x = 0; x < E; ++x)
        for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
          need(fmt::format("{}mlp.experts.{}.{}.weight", p, x, proj), nullptr, 2);
    }
  }
  const std::string layers = prefix + "layers.";
  for (const auto& n : names) {
    if (!n.starts_with(layers)) continue;
    const size_t b = layers.size(), e = n.find('.', b);
    const std::string idx = n.substr(b, e == std::string::npos ? std::string::npos : e - b);
    const bool ok = !idx.empty() && idx.size() < 10 && idx.find_first_not_of("0123456789") == std::string::npos &&
                    std::stoll(idx) < cfg.n_layers;
    HLWQ_CHECK(ok, "{}: tensor {} names a layer outside the config's {} layers", ck.file_of(n), n, cfg.n_layers);
    if (n.find(".mlp.experts.") != std::string::npos && !n.ends_with(".mlp.experts.gate_up_proj") &&
        !n.ends_with(".mlp.experts.down_proj")) {
      const std::string rest = n.substr(n.find(".mlp.experts.") + 13);
      const size_t dot = rest.find('.');
      const std::string num = rest.substr(0, dot), proj = dot == std::string::npos ? "" : rest.substr(dot + 1);
      const bool expert_ok = !num.empty() && num.size() < 10 &&
                             num.find_first_not_of("0123456789") == std::string::npos && std::stoll(num) < E &&
                             (proj == "gate_proj.weight" || proj == "up_proj.weight" || proj == "down_proj.weight");
      HLWQ_CHECK(expert_ok, "{}: tensor {} is not a routed expert weight hlwq knows ({} experts)", ck.file_of(n), n, E);
    }
  }
}

std::vector<PlanInput> plan_inputs(const Checkpoint& ck) {
  std::vector<PlanInput> v;
  for (const std::string& name : ck.names()) {
    const TensorEntry& e = ck.entry(name);
    v.push_back({name, e.dtype, e.shape, e.end - e.begin, ck.file_of(name)});
  }
  return v;
}

CtPlan plan_ct_int4(const ModelConfig& cfg, const Checkpoint& ck, const PlanOptions& opt) {
  HLWQ_CHECK(!cfg.quant.has_value(), "{}: the source is already quantized ({}); quantize a bf16 checkpoint",
             ck.dir(), cfg.quant ? cfg.quant->quant_method : "");
  check_complete(cfg, ck);
  return plan_ct_int4(cfg, plan_inputs(ck), ck.dir(), opt);
}

CtPlan plan_ct_int4(const ModelConfig& cfg, const std::vector<PlanInput>& inputs, const std::string& dir,
                    const PlanOptions& opt) {
  HLWQ_CHECK(!cfg.quant.has_value(), "{}: the source is already quantized ({}); quantize a bf16 checkpoint",
             dir, cfg.quant ? cfg.quant->quant_method : "");
  CtPlan plan;
  const int64_t E = cfg.n_experts, I = cfg.moe_intermediate, H = cfg.hidden_size;
  for (const PlanInput& e : inputs) {
    const std::string& name = e.name;
    const TensorRole role = role_of(name);
    if ((role == TensorRole::visual || role == TensorRole::mtp) && opt.language_model_only) {
      (role == TensorRole::visual ? plan.n_dropped_visual : plan.n_dropped_mtp)++;
      plan.items.push_back({name, PlanAction::drop, role, "", e.dtype, e.shape, 0, e.bytes, ""});
      continue;
    }
    // Only the text model's fused experts are split and quantized: SPEC §3 never quantizes mtp/visual, so theirs
    // fall through to the copy below (or were dropped above with --language-model-only).
    const bool text = role != TensorRole::visual && role != TensorRole::mtp;
    const bool fused_gate_up = text && ends_with(name, ".mlp.experts.gate_up_proj");
    const bool fused_down = text && ends_with(name, ".mlp.experts.down_proj");
    if (fused_gate_up || fused_down) {
      const Shape want = fused_gate_up ? Shape{E, 2 * I, H} : Shape{E, H, I};
      HLWQ_CHECK(e.shape == want, "{}: expected {} for {} (from config.json), got {}", e.file,
                 shape_str(want), name, shape_str(e.shape));
      HLWQ_CHECK(is_float(e.dtype), "{}: expected a floating dtype for {}, got {}", e.file, name,
                 dtype_name(e.dtype));
      const std::string base = name.substr(0, name.size() - (fused_gate_up ? 12 : 9));  // "...mlp.experts."
      const uint64_t esz = dtype_size(e.dtype);
      for (int64_t x = 0; x < E; ++x) {
        std::vector<std::pair<std::string, int64_t>> parts;  // (proj, first row)
        if (fused_gate_up) parts = {{"gate_proj", 0}, {"up_proj", I}};
        else parts = {{"down_proj", 0}};
        const int64_t rows = fused_gate_up ? I : H, cols = fused_gate_up ? H : I;
        const uint64_t expert_off = uint64_t(x) * uint64_t(want[1] * want[2]) * esz;
        for (const auto& [proj, row0] : parts) {
          PlanItem it{name, PlanAction::quantize, TensorRole::expert, fmt::format("{}{}.{}", base, x, proj),
                      e.dtype, {rows, cols}, expert_off + uint64_t(row0 * cols) * esz,
                      uint64_t(rows * cols) * esz, base + "*"};
          plan.items.push_back(std::move(it));
        }
      }
      continue;
    }
    if (text && name.find(".in_proj_ba.") != std::string::npos && plan.extra_ignore_patterns.empty())
      plan.extra_ignore_patterns.push_back("re:.*\\.in_proj_ba$");
    PlanItem it{name, PlanAction::copy, role, name, e.dtype, e.shape, 0, e.bytes, ""};
    if (role != TensorRole::visual && role != TensorRole::mtp && e.shape.size() == 2 && ends_with(name, ".weight") &&
        is_float(e.dtype) && !ct_name_is_kept(name, opt.quantize_lm_head)) {
      it.action = PlanAction::quantize;
      it.out_name = ct_base_name(name);
      if (role != TensorRole::expert) it.role = TensorRole::linear;
      it.group = fusion_group(name);
      if (it.role == TensorRole::expert) {
        // per-expert source: rows [I, H] or [H, I]; check against the config like the fused form
        const bool down = ends_with(name, ".down_proj.weight");
        const Shape want = down ? Shape{H, I} : Shape{I, H};
        HLWQ_CHECK(e.shape == want, "{}: expected {} for {} (from config.json), got {}", e.file,
                   shape_str(want), name, shape_str(e.shape));
      }
    }
    plan.items.push_back(std::move(it));
  }
  // Marlin's shape rule, applied to whole fusion groups.
  std::map<std::string, bool> group_ok;
  for (const auto& it : plan.items)
    if (it.action == PlanAction::quantize && !it.group.empty()) {
      auto [pos, fresh] = group_ok.emplace(it.group, true);
      pos->second = pos->second && ct_shape_is_marlin(it.out_shape[0], it.out_shape[1]);
    }
  // --ignore: the Linears a pattern names, and their fusion groups (vLLM runs a group as one layer of one scheme).
  std::vector<int64_t> hits(opt.ignore.size(), 0);
  std::set<std::string> ignored_groups, ignored_alone;
  for (const auto& it : plan.items) {
    if (it.action != PlanAction::quantize) continue;
    bool named = false;
    for (size_t i = 0; i < opt.ignore.size(); ++i) {
      bool m = false;
      try {
        m = hlwq_target_matches("re:" + opt.ignore[i], it.out_name);
      } catch (const Error& e) {
        fail("--ignore '{}': {}", opt.ignore[i], e.what());
      }
      hits[i] += m;
      named = named || m;
    }
    if (named) (it.group.empty() ? ignored_alone : ignored_groups).insert(it.group.empty() ? it.out_name : it.group);
  }
  for (size_t i = 0; i < opt.ignore.size(); ++i)
    HLWQ_CHECK(hits[i] > 0, "--ignore '{}': the regular expression names no Linear of {} that would be quantized (it "
               "is matched from the start of module names like model.layers.0.linear_attn.in_proj_qkv)",
               opt.ignore[i], dir);
  for (auto& it : plan.items) {
    if (it.action != PlanAction::quantize) continue;
    const bool ok = it.group.empty() ? ct_shape_is_marlin(it.out_shape[0], it.out_shape[1]) : group_ok[it.group];
    const bool ignored = it.group.empty() ? ignored_alone.count(it.out_name) > 0 : ignored_groups.count(it.group) > 0;
    if (ok && !ignored) continue;
    plan.n_ignored += ignored;
    it.action = PlanAction::copy;
    plan.extra_ignore.push_back(it.out_name);
    it.out_name += ".weight";
  }
  return plan;
}

std::vector<TensorSpec> ct_output_specs(const CtPlan& plan) {
  std::vector<TensorSpec> specs;
  for (const auto& it : plan.items) {
    if (it.action == PlanAction::copy) {
      specs.push_back({it.out_name, it.src_dtype, it.out_shape});
    } else if (it.action == PlanAction::quantize) {
      const int64_t out = it.out_shape[0], in = it.out_shape[1];
      specs.push_back({ct_packed_name(it.out_name), DType::I32, {out, in / kCtPackFactor}});
      specs.push_back({ct_scale_name(it.out_name), DType::BF16, {out, in / kCtGroupSize}});
      specs.push_back({ct_shape_name(it.out_name), DType::I64, {2}});
    }
  }
  std::sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
  return specs;
}

}  // namespace hlwq
