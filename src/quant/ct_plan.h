// The plan of a compressed-tensors INT4 export: what happens to every source tensor, decided before any data
// is read. Fused experts (`mlp.experts.gate_up_proj` [E, 2I, H], `mlp.experts.down_proj` [E, H, I]) become
// per-expert 2-D items; 2-D Linear weights are quantized unless SPEC §3's keep-list or Marlin's shape rule
// says otherwise; groups that vLLM fuses ({q,k,v}, {in_proj_qkv, in_proj_z}, {gate, up}, all experts of a
// layer) share one scheme, so one member failing the shape rule keeps the whole group unquantized.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "io/checkpoint_writer.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

namespace hlwq {

enum class PlanAction : uint8_t { quantize, copy, drop };
// What a tensor is, for the summary table.
enum class TensorRole : uint8_t { expert, linear, other, visual, mtp };
std::string_view tensor_role_name(TensorRole r);

struct PlanItem {
  std::string src_name;
  PlanAction action = PlanAction::copy;
  TensorRole role = TensorRole::other;
  std::string out_name;   // quantize: module base ("...experts.3.gate_proj"); copy: output tensor name
  DType src_dtype = DType::BF16;
  Shape out_shape;        // shape of what is written for copy; [out, in] for quantize
  uint64_t src_offset = 0;  // byte offset of the slice inside the source tensor (fused experts)
  uint64_t src_bytes = 0;   // bytes of the slice
  std::string group;        // vLLM fusion group ("" when alone)
};

struct PlanOptions {
  bool language_model_only = false;  // drop model.visual.* and mtp.*
  bool quantize_lm_head = false;
  // Module-name regexes (ECMAScript, matched from the start like quantization_config's "re:" ignore entries):
  // the Linears they name stay in the source dtype, with the rest of their vLLM fusion group, and are listed by
  // name in quantization_config.ignore. Each must name at least one Linear that would be quantized.
  std::vector<std::string> ignore;
};

struct CtPlan {
  std::vector<PlanItem> items;
  std::vector<std::string> extra_ignore;  // Linear modules kept unquantized by the shape rule or PlanOptions::ignore
  // Ignore patterns for keep-listed Linears only some architectures have (Qwen3-Next's in_proj_ba); added only
  // when such a tensor exists, so other models' quantization_config stays exactly the seed's.
  std::vector<std::string> extra_ignore_patterns;
  int64_t n_dropped_visual = 0, n_dropped_mtp = 0;
  int64_t n_ignored = 0;  // Linears kept in the source dtype by PlanOptions::ignore
};

// One source tensor as the plan sees it: its name, dtype, shape and size, and the file it lives in (messages).
struct PlanInput {
  std::string name;
  DType dtype = DType::BF16;
  Shape shape;
  uint64_t bytes = 0;
  std::string file;
};
std::vector<PlanInput> plan_inputs(const Checkpoint& ck);  // every tensor of ck, sorted by name

CtPlan plan_ct_int4(const ModelConfig& cfg, const Checkpoint& ck, const PlanOptions& opt);
// Refuses a bf16 checkpoint that does not hold every tensor its config implies (an incomplete download, a stale
// index), before anything is written.
void check_complete(const ModelConfig& cfg, const Checkpoint& ck);
// The same over a list of tensors that need not be stored as listed (the seed's hlwq-q5 weights are listed as
// the bf16 tensors they decode to); dir names the source in messages.
CtPlan plan_ct_int4(const ModelConfig& cfg, const std::vector<PlanInput>& inputs, const std::string& dir,
                    const PlanOptions& opt);
// The output tensors of the plan (packed I32 [out, in/8], scale BF16 [out, in/128], shape I64 [2] per
// quantized item; one tensor per copied item), sorted by name.
std::vector<TensorSpec> ct_output_specs(const CtPlan& plan);

}  // namespace hlwq
