#include "quant/partial_decode.h"

#include <filesystem>
#include <optional>
#include <regex>
#include <vector>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/compressed_tensors.h"
#include "io/hf_config.h"
#include "io/hlwq_format.h"
#include "io/safetensors.h"
#include "quant/ct_plan.h"
#include "quant/hlwq_checkpoint.h"
#include "quant/int4_pack.h"
#include "quant/model_source.h"

namespace hlwq {
namespace fs = std::filesystem;

namespace {

// The tensor `name` of ck, checked to be dtype [shape]; errors name the tensor, its file, expected and actual.
TensorView checked(const Checkpoint& ck, const std::string& name, DType dtype, const Shape& shape) {
  HLWQ_CHECK(ck.has(name), "{}: missing tensor {} (was it quantized from this source?)", ck.dir(), name);
  const TensorView t = ck.view(name);
  if (t.dtype != dtype || t.shape != shape)
    fail("expected {} {}, got {} for {} in {}", shape_str(shape), dtype_name(dtype), t.desc(), name, ck.file_of(name));
  return t;
}

}  // namespace

PartialDecodeReport write_partial_decode(const std::string& src, const std::string& quantized,
                                         const std::string& dst, const std::string& select) {
  std::regex re;
  try {
    re = std::regex(select, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail("selection '{}' is not a valid regular expression: {}", select, e.what());
  }
  const ModelSource source(src);
  const ModelConfig& cfg = source.config();
  HLWQ_CHECK(!source.is_seed_q5() && !cfg.quant.has_value(), "{}: the source must be the bf16 checkpoint", src);
  check_complete(cfg, source.checkpoint());
  const ModelConfig qcfg = load_model_config(quantized);
  HLWQ_CHECK(qcfg.quant.has_value(), "{}: not a quantized checkpoint (its config.json has no quantization_config)",
             quantized);
  const bool native = qcfg.quant->quant_method == kHlwqQuantMethod;
  HLWQ_CHECK(native || qcfg.quant->quant_method == "compressed-tensors",
             "{}: quant_method '{}' is neither compressed-tensors INT4 nor hlwq", quantized, qcfg.quant->quant_method);
  std::optional<HlwqFormat> fmt;  // owns the codebook the HLWQ views point into
  if (native) fmt = parse_hlwq_quantization_config(qcfg.raw["quantization_config"], quantized + "/config.json");
  const Checkpoint q(quantized);

  const CtPlan plan = plan_ct_int4(cfg, source.inputs(), source.dir(), PlanOptions{});
  PartialDecodeReport rep;
  std::vector<TensorSpec> specs;
  for (const PlanItem& it : plan.items) {
    if (it.action == PlanAction::copy) specs.push_back({it.out_name, it.src_dtype, it.out_shape});
    if (it.action == PlanAction::quantize) {
      specs.push_back({it.out_name + ".weight", DType::F32, it.out_shape});
      rep.decoded += std::regex_search(it.out_name, re);
    }
  }
  HLWQ_CHECK(rep.decoded > 0, "selection '{}' matches no quantized Linear of {}", select, src);
  rep.decoded = 0;
  StagedDir stage(dst, true, {fs::path(src), fs::path(quantized)});
  CheckpointWriter wr(stage.path(), specs, uint64_t(5) << 30);
  for (const PlanItem& it : plan.items) {
    if (it.action == PlanAction::copy) {
      source.copy(it, wr);
      ++rep.copied;
      continue;
    }
    if (it.action != PlanAction::quantize) continue;
    const int64_t out = it.out_shape[0], in = it.out_shape[1];
    std::vector<float> w(size_t(out * in));  // [out, in]
    if (!std::regex_search(it.out_name, re)) {
      source.read_f32(it, w.data());
      ++rep.source;
    } else if (native) {
      const HlwqMatrixView v = hlwq_native_view(q, it.out_name, out, in, *fmt);
      for (int64_t r = 0; r < out; ++r) hlwq_decode_row(v, r, w.data() + r * in);
      ++rep.decoded;
    } else {
      const TensorView packed = checked(q, ct_packed_name(it.out_name), DType::I32, {out, in / kCtPackFactor});
      const TensorView scale = checked(q, ct_scale_name(it.out_name), DType::BF16, {out, in / kCtGroupSize});
      int4_dequant(static_cast<const int32_t*>(packed.data), static_cast<const uint16_t*>(scale.data), out, in,
                   w.data());
      ++rep.decoded;
    }
    wr.write(it.out_name + ".weight", w.data(), w.size() * 4);
    source.release(it);
  }
  wr.finish();
  write_file(stage.path() / "config.json", cfg.raw.dump(2) + "\n");
  for (const char* side : {"generation_config.json", "tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(fs::path(src) / side)) fs::copy_file(fs::path(src) / side, stage.path() / side);
  stage.commit();
  return rep;
}

}  // namespace hlwq
