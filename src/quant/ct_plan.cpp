#include "quant/ct_plan.h"

#include <algorithm>
#include <map>
#include <regex>

#include "core/error.h"
#include "io/compressed_tensors.h"
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

// vLLM fusion group of a quantizable 2-D weight name, "" when it stands alone.
std::string fusion_group(const std::string& name) {
  static const std::regex kExpert(R"(^(.*\.mlp\.experts)\.\d+\.(gate|up|down)_proj\.weight$)");
  static const std::regex kQkv(R"(^(.*\.self_attn)\.(q|k|v)_proj\.weight$)");
  static const std::regex kQkvz(R"(^(.*\.linear_attn)\.in_proj_(qkv|z)\.weight$)");
  static const std::regex kGateUp(R"(^(.*)\.(gate|up)_proj\.weight$)");
  std::smatch m;
  if (std::regex_match(name, m, kExpert)) return m[1].str() + ".*";
  if (std::regex_match(name, m, kQkv)) return m[1].str() + ".qkv_proj";
  if (std::regex_match(name, m, kQkvz)) return m[1].str() + ".in_proj_qkvz";
  if (std::regex_match(name, m, kGateUp)) return m[1].str() + ".gate_up_proj";
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

std::vector<PlanInput> plan_inputs(const Checkpoint& ck) {
  std::vector<PlanInput> v;
  for (const std::string& name : ck.names()) {
    const TensorEntry& e = ck.entry(name);
    v.push_back({name, e.dtype, e.shape, e.end - e.begin, ck.file_of(name)});
  }
  return v;
}

CtPlan plan_ct_int4(const ModelConfig& cfg, const Checkpoint& ck, const PlanOptions& opt) {
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
  for (auto& it : plan.items) {
    if (it.action != PlanAction::quantize) continue;
    const bool ok = it.group.empty() ? ct_shape_is_marlin(it.out_shape[0], it.out_shape[1]) : group_ok[it.group];
    if (ok) continue;
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
