// What calibrated quantization (hlwq quantize --calib) consumes: per linear, the statistics of its real inputs,
// H = Σ x xᵀ over the calibration tokens it saw (routed experts: only the tokens routed to them). quant/ only
// reads them; producing them means running the model (calib/engine_calibration.h), which quant/ must not depend
// on, so the pipeline sees this interface.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hlwq {

struct LinearInputStats {
  int64_t in = 0;
  int64_t n_tokens = 0;   // rows of x accumulated
  std::vector<double> H;  // [in, in] Σ x xᵀ (symmetric)
};

// Linear (module) name → its input's statistics; linears reading the same input share one object.
using LinearStatsMap = std::map<std::string, std::shared_ptr<const LinearInputStats>>;

// The linear whose input `linear` shares (so one statistic serves both): k_proj/v_proj → q_proj, GDN's
// in_proj_z/b/a → in_proj_qkv, an expert's (or the shared expert's) up_proj → gate_proj; else the name itself.
std::string linear_input_key(std::string_view linear);

struct CalibrationSummary {
  std::string text;            // the calibration file
  std::string engine;          // the backend that ran the model (cpu, cuda)
  int64_t tokens = 0, windows = 0, ctx = 0;
  int passes = 0;              // forward passes over the text (one per group of layers)
  double seconds = 0;          // time spent running the model and accumulating
  uint64_t peak_stats_bytes = 0;  // largest statistics held at once
};

class CalibrationSource {
 public:
  virtual ~CalibrationSource() = default;
  // Runs the calibration text through the model once and returns the statistics of these linears (module names
  // as the plan writes them, e.g. "model.layers.3.mlp.experts.7.down_proj"); a linear the model never ran is
  // absent. Memory: 8·in² bytes per distinct input.
  virtual LinearStatsMap collect(const std::vector<std::string>& linears) = 0;
  // Sequential calibration: the model runs `linear` with these weights w [out, in] (its quantized values) in the
  // passes that follow, so later layers are calibrated on the quantized model's activations. May be called from
  // several threads at once.
  virtual void substitute(const std::string& linear, const float* w, int64_t out, int64_t in) = 0;
  virtual CalibrationSummary summary() const = 0;
};

}  // namespace hlwq
