// EngineCalibration: the statistics calibrated quantization needs (quant/calib_stats.h), measured by running the
// source model itself with hlwq's engine on a calibration text. The text is tokenized like an evaluation text
// (paragraphs + "\n\n", runtime/evaluate.h) and cut into windows of `ctx`; `tokens / ctx` of them, spread evenly
// over the text, each run as a fresh sequence, and every linear's input rows are summed: H += Xᵀ X in double, one
// per distinct input (linear_input_key). On the CPU backend its linear-input tap (backend/cpu/cpu_ctx.h) hands the
// rows to accumulators here; on CUDA the backend sums them on the device (Backend::begin_input_stats), in as many
// passes as its free memory needs, and only the sums cross PCIe.
// By default the inputs are the bf16 model's own ("parallel" calibration: every layer sees unquantized inputs),
// so one pass serves every layer; collect() runs one pass per call for the linears asked, which bounds memory by
// what the caller asks for at once (8·in² bytes per distinct input). Sequential calibration substitutes each
// quantized linear's values into the model (substitute()), so the next pass sees the quantized model's
// activations; the substituted weights are held in fp32. That needs the CPU engine, which reads its weights
// where they lie (the GPU's were packed at load).
// The two engines' statistics differ as their forwards do (the GPU's GEMM inputs are bf16, and the experts'
// SiLU(gate)·up is summed in bf16 there): tests/cuda/test_cuda_calibration.cpp bounds the difference.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/calib_stats.h"

namespace hlwq {

struct CalibOptions {
  std::string model_dir;   // the bf16 source (its tokenizer.json tokenizes the text)
  std::string text;        // calibration text (UTF-8)
  std::string text_name;   // for the summary and messages
  int64_t tokens = 65536;  // at most this many (whole windows)
  int64_t ctx = 512;       // window length
  Device device = Device::cpu;  // where the model runs
  int64_t gpu_memory = 0;       // CUDA: the model's device memory budget (LoadOptions::gpu_memory; 0: none)
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
