// Command-line options shared by `run` and `chat`: sampling, length, stop strings, context; and loading a
// model directory with its tokenizer, chat template and eos ids.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/model.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "runtime/tokenizer.h"

namespace hlwq::cli {

struct GenerationArgs {
  int64_t n_predict = 256;
  int64_t ctx = 4096;
  float temp = 0.7f, top_p = 0.95f, min_p = 0.0f, repeat_penalty = 1.0f, presence_penalty = 0.0f;
  int32_t top_k = 20;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  int threads = 0;
};

void add_generation_options(CLI::App* sub, GenerationArgs& a);

struct LoadedModel {
  Model model;
  Tokenizer tok;
  ChatTemplate chat;
  std::vector<int32_t> eos_ids;
};

// Load options for one sequence of up to ctx tokens (run, chat).
LoadOptions context_load_options(int64_t ctx);
LoadedModel load_model_dir(const std::string& dir, const LoadOptions& lo);
GenerateOptions make_generate_options(const GenerationArgs& a, const LoadedModel& m);
void apply_threads(int threads);  // 0: leave OpenMP's default (all cores)

}  // namespace hlwq::cli
