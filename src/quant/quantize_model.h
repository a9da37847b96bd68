// `hlwq quantize`: streams a Hugging Face checkpoint tensor by tensor into a compressed-tensors INT4
// checkpoint (SPEC §3), or into HLWQ codes (hlwq_export.h). Every output tensor's place is planned first (ct_plan.h), then items are quantized in
// parallel and written straight to their final offsets; the output directory appears only when complete.
// Peak memory is bounded by the largest items in flight (one fp32 copy plus its packed result per thread),
// not by the model size: source pages are released after each tensor is consumed.
// Calibrated (QuantizeOptions::calib, docs/calibration.md): the linears of the model's layers are quantized by
// GPTQ (quant/gptq.h) with their inputs' statistics, a group of layers at a time: one pass of the calibration
// text per group, groups sized so their statistics and factors stay under calib_max_bytes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "quant/calib_stats.h"
#include "quant/ct_plan.h"
#include "quant/gptq.h"
#include "quant/hlwq_codec.h"
#include "quant/int4_quant.h"

namespace hlwq {

// What quantize writes: compressed-tensors INT4 (SPEC §3), hlwq's native HLWQ codes (docs/hlwq-format.md), or
// the seed's hlwq-q5 layout (SPEC §4; always 5 bits with the seed's table, which its readers assume).
// SRC may be a bf16 checkpoint, or the seed's hlwq-q5 checkpoint for ct-int4 (the seed's Q5 → bf16 → INT4).
enum class QuantFormat : uint8_t { ct_int4, hlwq, hlwq_q5 };
QuantFormat parse_quant_format(std::string_view name);  // "ct-int4", "hlwq", "hlwq-q5"
std::string_view quant_format_name(QuantFormat f);

struct QuantizeOptions {
  std::string src, dst;
  QuantFormat format = QuantFormat::ct_int4;
  Int4Method method = Int4Method::rtn;  // ct-int4
  int hlwq_bits = 4;                    // hlwq: 2..8
  // hlwq: (REGEX, B) — quantized modules whose name REGEX matches (anchored at the start, like `ignore`'s "re:")
  // get B bits instead; the first matching entry decides. Stored as quantization_config.overrides (version 2).
  std::vector<std::pair<std::string, int>> hlwq_bits_for;
  HlwqScale hlwq_scale = HlwqScale::least_squares;  // hlwq (hlwq-q5 always uses the seed's l2 norm)
  PlanOptions plan;
  int threads = 0;                      // 0: all cores
  bool force = false;                   // replace an existing dst
  uint64_t max_shard_bytes = 5000000000ull;  // HF's default "5GB"
  bool progress = true;
  // Calibrated quantization when set: every linear of the layers with enough calibration tokens
  // (calib_min_tokens) is quantized by GPTQ; the others (routed experts that saw too few tokens, layers the
  // engine does not run) by the calibration-free method: `method` (ct-int4) or the codec (hlwq).
  CalibrationSource* calib = nullptr;
  GptqOptions gptq;
  int64_t calib_min_tokens = 128;
  uint64_t calib_max_bytes = uint64_t(8) << 30;  // statistics + factors of one group of layers
  // One pass per layer, each on the activations of the model quantized so far (CalibrationSource::substitute).
  bool calib_sequential = false;
};

struct RoleStats {
  int64_t n_in = 0, n_out = 0;  // source items and output tensors
  uint64_t bytes_in = 0, bytes_out = 0;
  WeightError error;            // quantized items only
  // Calibrated runs: items quantized by GPTQ, items that fell back to the calibration-free method, and for
  // every item with statistics the output error Σ ΔwᵀHΔw / Σ wᵀHw (H of the calibration inputs).
  int64_t n_gptq = 0, n_fallback = 0;
  WeightError out_error;
};

struct QuantizeReport {
  std::map<TensorRole, RoleStats> roles;
  RoleStats quantized, kept, dropped;  // by action
  // HLWQ outputs: weights of the quantized items and the bytes of their codes and norms (bits/weight = 8·bytes/n)
  int64_t hlwq_weights = 0;
  uint64_t hlwq_code_bytes = 0;
  WeightError error;                   // all quantized weights together
  int64_t n_dropped_visual = 0, n_dropped_mtp = 0;
  int64_t n_ignored = 0;  // Linears --ignore kept in the source dtype
  uint64_t bytes_in = 0, bytes_out = 0;
  int n_shards = 0, threads = 0;
  double seconds = 0;
  uint64_t peak_rss_bytes = 0;
  bool from_seed_q5 = false;  // errors are then against the decoded Q5 weights (the original is not in SRC)
  bool calibrated = false;
  CalibrationSummary calib;
  double quantize_seconds = 0;  // of seconds: the part not spent in calibration passes
};

QuantizeReport quantize_model(const QuantizeOptions& opt);
// The human summary table (tensors per kind, bytes in and out, compression ratio, relative weight MSE).
std::string format_quantize_report(const QuantizeReport& r, const QuantizeOptions& opt);

}  // namespace hlwq
