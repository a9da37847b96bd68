// --device cpu|cuda, the same in every command that runs a model (run, chat, eval, serve, bench): where the model
// computes. Without the option: cuda when this binary has the CUDA backend and a GPU is visible, else cpu.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace hlwq::cli {

void add_device_option(CLI::App* sub, std::string& device);
// "" (the option not given) picks the default; "cuda" without CUDA support or a GPU is a UsageError that says which.
Device resolve_device(const std::string& device);

}  // namespace hlwq::cli
