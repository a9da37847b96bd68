#include "cli/sampling_options.h"

#include <omp.h>

#include <filesystem>

#include "core/error.h"
#include "runtime/stop_condition.h"

namespace hlwq::cli {

void add_generation_options(CLI::App* sub, GenerationArgs& a) {
  sub->add_option("-n,--n-predict", a.n_predict, "tokens to generate at most")->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("-c,--ctx", a.ctx, "context length (tokens)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--temp", a.temp, "temperature (0: greedy)")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--top-k", a.top_k, "top-k (0: off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", a.top_p, "top-p (1: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  sub->add_option("--min-p", a.min_p, "min-p (0: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  sub->add_option("--repeat-penalty", a.repeat_penalty, "repetition penalty (1: off)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--presence-penalty", a.presence_penalty, "presence penalty (0: off)")->capture_default_str();
  sub->add_option("--seed", a.seed, "sampling seed")->capture_default_str();
  sub->add_option("--stop", a.stop, "stop string (repeatable)");
  sub->add_option("-t,--threads", a.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
}

void apply_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}

LoadOptions context_load_options(int64_t ctx) {
  LoadOptions lo;
  lo.kv_tokens = ctx;
  return lo;
}

LoadedModel load_model_dir(const std::string& dir, const LoadOptions& lo) {
  Model m = Model::load(dir, lo);
  const auto tok_path = std::filesystem::path(dir) / "tokenizer.json";
  HLWQ_CHECK(std::filesystem::exists(tok_path), "{}: missing tokenizer.json", dir);
  Tokenizer tok = Tokenizer::from_file(tok_path);
  HLWQ_CHECK(tok.vocab_size() <= m.config().vocab_size,
             "{}: tokenizer has {} ids but the model's vocabulary is {}", dir, tok.vocab_size(),
             m.config().vocab_size);
  return {std::move(m), std::move(tok), ChatTemplate::from_model_dir(dir), load_eos_ids(dir)};
}

GenerateOptions make_generate_options(const GenerationArgs& a, const LoadedModel& m) {
  GenerateOptions o;
  o.max_new_tokens = a.n_predict;
  o.sampler.temperature = a.temp;
  o.sampler.top_k = a.top_k;
  o.sampler.top_p = a.top_p;
  o.sampler.min_p = a.min_p;
  o.sampler.repetition_penalty = a.repeat_penalty;
  o.sampler.presence_penalty = a.presence_penalty;
  o.sampler.seed = a.seed;
  o.eos_ids = m.eos_ids;
  // ChatML's turn end stops a chat turn even where the model's eos is <|endoftext|>.
  for (const char* t : {"<|im_end|>", "<|endoftext|>"})
    if (auto id = m.tok.token_id(t)) o.eos_ids.push_back(*id);
  o.stop_strings = a.stop;
  // load_model_dir allows a tokenizer smaller than the (padded) embedding: never sample an id it cannot print.
  o.n_valid_tokens = m.tok.vocab_size();
  return o;
}

}  // namespace hlwq::cli
