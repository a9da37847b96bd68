// Command-line options shared by `run` and `chat`: sampling, length, stop strings, context, seed; their checks
// (all before anything runs); the model's generation_config.json defaults; and loading a model directory with
// its tokenizer, chat template and eos ids.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/device_option.h"
#include "io/hf_config.h"
#include "model/model.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "runtime/tokenizer.h"

namespace hlwq::cli {

// Sampling values left empty come from the model's generation_config.json, else from hlwq's defaults
// (temperature 0.7, top-k 20, top-p 0.95, min-p 0, repetition penalty 1).
struct GenerationArgs {
  int64_t n_predict = 256;     // -1: until the context is full
  std::optional<int64_t> ctx;  // default: min(4096, the model's max_position_embeddings)
  std::optional<float> temp, top_p, min_p, repeat_penalty;
  std::optional<int32_t> top_k;
  float presence_penalty = 0.0f;
  int64_t seed = -1;  // -1: random (printed)
  std::vector<std::string> stop;
  int threads = 0;
  DeviceArgs device;     // --device and the expert-offload options (cli/device_option.h)
  int n_gpu_layers = 0;  // accepted for llama.cpp users: --device decides where layers run
};

void add_generation_options(CLI::App* sub, GenerationArgs& a);
// Checks what the parser cannot (empty stop strings); throws UsageError.
void check_generation_args(const GenerationArgs& a);
// The context length: --ctx, checked against the model's limit (UsageError), or the default.
int64_t resolve_ctx(const GenerationArgs& a, const ModelConfig& cfg);

struct LoadedModel {
  std::string dir;
  Model model;
  Tokenizer tok;
  ChatTemplate chat;
  std::vector<int32_t> eos_ids;
};

// Load options for one sequence of up to ctx tokens on the device and offload options given (run, chat).
LoadOptions context_load_options(int64_t ctx, const DeviceArgs& device);
LoadedModel load_model_dir(const std::string& dir, const LoadOptions& lo);
// The options generate() runs with, and one line saying what they are and where they came from
// ("temperature 0.6, top-k 20, top-p 0.95 (generation_config.json), seed 1234").
struct ResolvedGeneration {
  GenerateOptions opt;
  std::string summary;
};
ResolvedGeneration resolve_generation(const GenerationArgs& a, const LoadedModel& m);
void apply_threads(int threads);  // 0: leave OpenMP's default (all cores)
// How the CLI names a finish: "length", "stop" (eos or stop string), "context" (full), "interrupted".
const char* finish_label(FinishReason r);
// Prints the -ngl note on stderr when the option was given.
void note_gpu_layers(const GenerationArgs& a, Device device);

}  // namespace hlwq::cli
