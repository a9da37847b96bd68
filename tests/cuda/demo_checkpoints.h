// The bundled demo model and checkpoints quantized from it in scratch directories, for the CUDA model tests that
// run a native HLWQ checkpoint (test_cuda_hlwq_model.cpp, test_cuda_cpu_experts.cpp).
#pragma once
#include <filesystem>
#include <functional>

#include "quant/quantize_model.h"

namespace hlwq::test {

std::filesystem::path demo_model();  // models/tiny-moe-dev
// The demo model quantized into scratch directory `name` with the options `set` chooses.
std::filesystem::path quantize_demo(const char* name, const std::function<void(QuantizeOptions&)>& set);
// The demo model as a native HLWQ checkpoint at 4 bits (`hlwq quantize --format hlwq --bits 4`), once per process.
const std::filesystem::path& demo_hlwq4();

}  // namespace hlwq::test
