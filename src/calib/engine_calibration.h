// EngineCalibration: the statistics calibrated quantization needs (quant/calib_stats.h), measured by running the
// source model itself with hlwq's engine on a calibration text. The text is tokenized like an evaluation text
// (paragraphs + "\n\n", runtime/evaluate.h) and cut into windows of `ctx`; `tokens / ctx` of them, spread evenly
// over the text, each run as a fresh sequence through the CPU backend, whose linear-input tap
// (backend/cpu/cpu_ctx.h) hands every linear's input rows to an accumulator: H += Xᵀ X in double, one per
// distinct input (linear_input_key).
// By default the inputs are the bf16 model's own ("parallel" calibration: every layer sees unquantized inputs),
// so one pass serves every layer; collect() runs one pass per call for the linears asked, which bounds memory by
// what the caller asks for at once (8·in² bytes per distinct input). Sequential calibration substitutes each
// quantized linear's values into the model (substitute()), so the next pass sees the quantized model's
// activations; the substituted weights are held in fp32.
// The engine runs on the CPU (the reference backend; the tap is a CPU-backend capability).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/calib_stats.h"

namespace hlwq {

struct CalibOptions {
  std::string model_dir;   // the bf16 source (its tokenizer.json tokenizes the text)
  std::string text;        // calibration text (UTF-8)
  std::string text_name;   // for the summary and messages
  int64_t tokens = 65536;  // at most this many (whole windows)
  int64_t ctx = 512;       // window length
  bool progress = true;
};

class EngineCalibration final : public CalibrationSource {
 public:
  // Loads the model and tokenizer and tokenizes the text; throws when the text is shorter than one window.
  explicit EngineCalibration(const CalibOptions& opt);
  ~EngineCalibration() override;
  LinearStatsMap collect(const std::vector<std::string>& linears) override;
  // Keeps a copy of w (fp32, 4·out·in bytes, held until the calibration ends) and points the model's linear at it.
  void substitute(const std::string& linear, const float* w, int64_t out, int64_t in) override;
  CalibrationSummary summary() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hlwq
