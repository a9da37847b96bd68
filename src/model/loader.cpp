// Checkpoint -> ModelWeights with loud validation (see loader.h). Routed experts are read per-expert
// (mlp.experts.E.{gate,up,down}_proj[.weight|.weight_packed...]) or fused (gate_up_proj [E, 2I, H],
// down_proj [E, H, I]); fused experts become per-expert views into the fused tensor, nothing is copied.
#include "model/loader.h"

#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "core/error.h"
#include "io/seed_q5.h"
#include "quant/hlwq_checkpoint.h"
#include "backend/cpu/matmul.h"
#include "model/tensor_names.h"

namespace hlwq {
namespace {

bool is_float(DType t) { return t == DType::BF16 || t == DType::F16 || t == DType::F32; }

class Loader {
 public:
  Loader(const Checkpoint& ck, const ModelConfig& c) : ck_(ck), c_(c), prefix_(detect_text_prefix(ck)) {
    if (c_.quant && c_.quant->quant_method == kHlwqQuantMethod)
      hlwq_ = std::make_shared<const HlwqFormat>(
          parse_hlwq_quantization_config(c_.raw["quantization_config"], ck_.dir() + "/config.json"));
    if (is_seed_q5_dir(ck_.dir())) q5_ = seed_q5_weights(ck_);
  }

  ModelWeights load() {
    HLWQ_CHECK(c_.arch == ModelArch::qwen3_5_moe, "{}: arch {} is not yet supported (hlwq runs qwen3_5_moe)",
               ck_.dir(), model_arch_name(c_.arch));
    // moe_forward always renormalizes the top-k routing weights, as Qwen3.5/3.6 do; a config asking for raw
    // softmax weights would silently get different math.
    HLWQ_CHECK(c_.norm_topk_prob, "{}: norm_topk_prob = false is not supported (hlwq always renormalizes the top-k "
               "routing weights, as Qwen3.5 does)", ck_.dir());
    const int64_t H = c_.hidden_size, V = c_.vocab_size;
    ModelWeights w;
    w.hlwq_format = hlwq_;
    w.embed = float_tensor(prefix_ + kEmbedTokens, {V, H});
    w.final_norm = vec(prefix_ + kFinalNorm, {H});
    if (c_.tie_word_embeddings) {
      w.lm_head = LinearWeight{prefix_ + "embed_tokens", LinearFormat::dense, V, H, w.embed, {}, {}, {}};
      if (ck_.has(std::string(kLmHead) + ".weight")) used_.insert(std::string(kLmHead) + ".weight");
    } else {
      w.lm_head = linear(kLmHead, V, H);
    }
    w.layers.resize(size_t(c_.n_layers));
    for (int64_t L = 0; L < c_.n_layers; ++L) load_layer(L, w.layers[size_t(L)]);
    check_all_used();
    return w;
  }

 private:
  const Checkpoint& ck_;
  const ModelConfig& c_;
  std::string prefix_;
  std::set<std::string> used_;
  std::shared_ptr<const HlwqFormat> hlwq_;          // native HLWQ checkpoint
  std::map<std::string, SeedQ5Weight> q5_;          // the seed's hlwq-q5 checkpoint, by weight name

  // A coded weight of the seed's Q5 checkpoint as a linear (its three tensors count as used).
  HlwqMatrixView q5_view(const std::string& name, int64_t out, int64_t in) {
    const SeedQ5Weight& w = q5_.at(name);
    HLWQ_CHECK(w.out == out && w.in == in, "expected [{}, {}], got [{}, {}] (from {}__meta) for the hlwq-q5 weight {}",
               out, in, w.out, w.in, w.key, name);
    for (const char* part : {"__packed", "__norms", "__meta"}) used_.insert(w.key + part);
    const HlwqMatrixView v = seed_q5_view(w);
    hlwq_check_view(v, name.c_str());
    return v;
  }

  TensorView get(const std::string& name) {
    HLWQ_CHECK(ck_.has(name), "{}: missing tensor {}", ck_.dir(), name);
    used_.insert(name);
    return ck_.view(name);
  }

  // A floating tensor of the given shape, any of BF16/F16/F32.
  TensorView float_tensor(const std::string& name, const Shape& shape) {
    TensorView t = get(name);
    if (!is_float(t.dtype))
      fail("expected {} BF16|F16|F32, got {} for {}", shape_str(shape), t.desc(), name);
    if (t.shape != shape) fail("expected {} {}, got {} for {}", shape_str(shape), dtype_name(t.dtype), t.desc(), name);
    return t;
  }

  TensorView exact_tensor(const std::string& name, const Shape& shape, DType dtype) {
    TensorView t = get(name);
    if (t.dtype != dtype || t.shape != shape)
      fail("expected {} {}, got {} for {}", shape_str(shape), dtype_name(dtype), t.desc(), name);
    return t;
  }

  std::vector<float> vec(const std::string& name, const Shape& shape) {
    return tensor_to_f32(float_tensor(name, shape));
  }

  LinearWeight linear(const std::string& base, int64_t out, int64_t in) {
    LinearWeight lw;
    lw.name = base;
    lw.out = out;
    lw.in = in;
    if (hlwq_ && hlwq_has_native(ck_, base)) {
      lw.format = LinearFormat::hlwq;
      lw.hlwq = hlwq_native_view(ck_, base, out, in, *hlwq_);
      for (const std::string& n : {hlwq_codes_name(base), hlwq_norms_name(base), hlwq_shape_name(base)}) used_.insert(n);
      return lw;
    }
    if (q5_.count(base + ".weight")) {
      lw.format = LinearFormat::hlwq;
      lw.hlwq = q5_view(base + ".weight", out, in);
      return lw;
    }
    if (ck_.has(base + ".weight")) {
      lw.format = LinearFormat::dense;
      lw.weight = float_tensor(base + ".weight", {out, in});
      return lw;
    }
    HLWQ_CHECK(ck_.has(base + ".weight_packed"), "{}: missing tensor {}.weight (or {}.weight_packed)", ck_.dir(),
               base, base);
    HLWQ_CHECK(in % 128 == 0, "{}.weight_packed: INT4 group-128 needs in % 128 == 0, but in = {}", base, in);
    // Checked here, not in the kernels: they run inside OpenMP regions, where a throw would terminate.
    HLWQ_CHECK(in / 128 <= kMaxInt4Groups, "{}.weight_packed: in = {} is too wide for the INT4 kernels (at most {})",
               base, in, kMaxInt4Groups * 128);
    lw.format = LinearFormat::u4b8_g128;
    lw.packed = exact_tensor(base + ".weight_packed", {out, in / 8}, DType::I32);
    lw.scale = float_tensor(base + ".weight_scale", {out, in / 128});
    if (ck_.has(base + ".weight_shape")) {
      TensorView s = exact_tensor(base + ".weight_shape", {2}, DType::I64);
      int64_t dims[2];
      std::memcpy(dims, s.data, sizeof dims);
      HLWQ_CHECK(dims[0] == out && dims[1] == in, "expected weight_shape [{}, {}], got [{}, {}] for {}.weight_shape",
                 out, in, dims[0], dims[1], base);
    }
    return lw;
  }

  template <class W>
  void load_table(const std::string& at, const LayerTable<W>& t, W& w) {
    for (const auto& e : t.linears) w.*e.field = linear(at + e.name, e.out, e.in);
    for (const auto& e : t.vectors) w.*e.field = vec(at + e.name, e.shape);
  }

  void load_layer(int64_t L, LayerWeights& lw) {
    const std::string at = fmt::format("{}layers.{}.", prefix_, L);
    load_table(at, layer_norm_table(c_), lw);
    if (c_.layer_types[size_t(L)] == LayerKind::linear_attention) load_table(at, gdn_table(c_), lw.gdn);
    else load_table(at, attention_table(c_), lw.attn);
    MoeWeights& m = lw.moe;
    load_table(at, moe_table(c_), m);
    const int64_t H = c_.hidden_size, I = c_.moe_intermediate, E = c_.n_experts;
    if (c_.shared_expert_intermediate > 0) {
      m.has_shared = true;
      load_table(at + "mlp.shared_expert.", expert_table(H, c_.shared_expert_intermediate), m.shared);
    }
    m.experts.resize(size_t(E));
    if (q5_.count(at + kFusedGateUp) || q5_.count(at + kFusedDown)) {
      load_fused_q5_experts(at, m);
      return;
    }
    const std::string e0 = at + "mlp.experts.0.gate_proj";
    if (!ck_.has(e0 + ".weight") && !ck_.has(e0 + ".weight_packed") && ck_.has(at + kFusedGateUp)) {
      load_fused_experts(at, m);
      return;
    }
    for (int64_t e = 0; e < E; ++e)
      load_table(fmt::format("{}mlp.experts.{}.", at, e), expert_table(H, I), m.experts[size_t(e)]);
  }

  void load_fused_experts(const std::string& at, MoeWeights& m) {
    const int64_t H = c_.hidden_size, I = c_.moe_intermediate, E = c_.n_experts;
    const TensorView gu = float_tensor(at + kFusedGateUp, {E, 2 * I, H});  // [E, 2I, H]
    const TensorView dn = float_tensor(at + kFusedDown, {E, H, I});        // [E, H, I]
    const size_t es = dtype_size(gu.dtype), ds = dtype_size(dn.dtype);
    auto sub = [](const TensorView& t, size_t byte_off, Shape s) {
      return TensorView{t.dtype, std::move(s), static_cast<const uint8_t*>(t.data) + byte_off};
    };
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights& x = m.experts[size_t(e)];
      const size_t gu_off = size_t(e * 2 * I * H) * es;
      const std::string n = fmt::format("{}mlp.experts.{}.", at, e);
      x.gate_proj = {n + "gate_proj", LinearFormat::dense, I, H, sub(gu, gu_off, {I, H}), {}, {}, {}};
      x.up_proj = {n + "up_proj", LinearFormat::dense, I, H, sub(gu, gu_off + size_t(I * H) * es, {I, H}), {}, {}, {}};
      x.down_proj = {n + "down_proj", LinearFormat::dense, H, I, sub(dn, size_t(e * H * I) * ds, {H, I}), {}, {}, {}};
    }
  }

  // The seed's Q5 codes of fused experts ([E·2I, H] and [E·H, I] rows): each expert a row range of the view.
  void load_fused_q5_experts(const std::string& at, MoeWeights& m) {
    const int64_t H = c_.hidden_size, I = c_.moe_intermediate, E = c_.n_experts;
    HLWQ_CHECK(q5_.count(at + kFusedGateUp) && q5_.count(at + kFusedDown),
               "{}: hlwq-q5 has only one of {}{} and {}{}", ck_.dir(), at, kFusedGateUp, at, kFusedDown);
    const HlwqMatrixView gu = q5_view(at + kFusedGateUp, E * 2 * I, H), dn = q5_view(at + kFusedDown, E * H, I);
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights& x = m.experts[size_t(e)];
      const std::string n = fmt::format("{}mlp.experts.{}.", at, e);
      auto lin = [&](const char* proj, const HlwqMatrixView& v, int64_t r0, int64_t rows, int64_t cols) {
        LinearWeight lw{n + proj, LinearFormat::hlwq, rows, cols, {}, {}, {}, {}};
        lw.hlwq = v.rows(r0, rows);
        return lw;
      };
      x.gate_proj = lin("gate_proj", gu, e * 2 * I, I, H);
      x.up_proj = lin("up_proj", gu, e * 2 * I + I, I, H);
      x.down_proj = lin("down_proj", dn, e * H, H, I);
    }
  }

  void check_all_used() const {
    std::vector<std::string> extra;
    for (const auto& n : ck_.names())
      if (!used_.count(n) && !tensor_name_ignored(n)) extra.push_back(n);
    if (extra.empty()) return;
    const size_t n = extra.size();
    if (n > 5) extra.resize(5);
    fail("{}: {} tensor(s) hlwq does not know how to apply, e.g. {}", ck_.dir(), n, fmt::join(extra, ", "));
  }
};

}  // namespace

std::string detect_text_prefix(const Checkpoint& ckpt) {
  for (const char* p : {"model.language_model.", "model."})
    if (ckpt.has(std::string(p) + kEmbedTokens)) return p;
  fail("{}: no model.language_model.{} or model.{} (not a Qwen3.5-MoE text checkpoint?)", ckpt.dir(), kEmbedTokens,
       kEmbedTokens);
}

ModelWeights load_model_weights(const Checkpoint& ckpt, const ModelConfig& cfg) { return Loader(ckpt, cfg).load(); }

}  // namespace hlwq
