#include "cli/sampling_options.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/device_option.h"
#include "cli/options.h"
#include "core/error.h"
#include "core/thread_count.h"
#include "runtime/stop_condition.h"

namespace hlwq::cli {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kDefaultCtx = 4096;

// A generation_config.json value, range-checked like the option that overrides it.
template <typename T>
std::optional<T> config_value(const nlohmann::json& j, const char* key, double lo, double hi, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const nlohmann::json& v = j[key];
  HLWQ_CHECK(v.is_number(), "{}: {} must be a number, got {}", file, key, v.type_name());
  const double x = v.get<double>();
  HLWQ_CHECK(std::isfinite(x) && x >= lo && x <= hi, "{}: {} = {} is outside [{}, {}]", file, key, x, lo, hi);
  return T(x);
}

}  // namespace

void add_generation_options(CLI::App* sub, GenerationArgs& a) {
  sub->add_option("-n,--n-predict", a.n_predict, "tokens to generate at most (-1: until the context is full)")
      ->capture_default_str()->check(whole_at_least(-1));
  sub->add_option("-c,--ctx", a.ctx, "context length in tokens (default: 4096 or the model's limit if smaller)")
      ->check(whole_at_least(2));
  sub->add_option("--temp", a.temp, "temperature, 0 for greedy (default: generation_config.json, else 0.7)")
      ->check(number_in(0, 100));
  sub->add_option("--top-k", a.top_k, "top-k, 0 for off (default: generation_config.json, else 20)")
      ->check(whole(0, INT32_MAX, "a whole number of at least 0", "at least 0"));
  sub->add_option("--top-p", a.top_p, "top-p, 1 for off (default: generation_config.json, else 0.95)")
      ->check(number_in(0, 1, true));
  sub->add_option("--min-p", a.min_p, "min-p, 0 for off (default: generation_config.json, else 0)")
      ->check(number_in(0, 1));
  sub->add_option("--repeat-penalty", a.repeat_penalty, "repetition penalty, 1 for off")->check(number_in(0, 100, true));
  sub->add_option("--presence-penalty", a.presence_penalty, "presence penalty, 0 for off")->capture_default_str()
      ->check(number_in(-2, 2));
  sub->add_option("-s,--seed", a.seed, "sampling seed; -1 (default) picks a random one and prints it")
      ->capture_default_str()
      ->check(whole(-1, INT64_MAX, "-1 (random) or a whole number of at least 0", "-1 or at least 0"));
  sub->add_option("--stop", a.stop, "stop string (repeatable)");
  sub->add_option("-t,--threads", a.threads, "CPU threads (default: all cores)")->check(whole_in(0, 4096));
  add_device_options(sub, a.device);
  sub->add_option("--n-gpu-layers,--gpu-layers", a.n_gpu_layers,
                  "(also -ngl) accepted for llama.cpp users; --device decides where layers run")
      ->check(whole(-1, INT32_MAX, "a whole number of at least -1", "at least -1"));
}

void check_generation_args(const GenerationArgs& a) {
  if (a.n_predict == 0) usage_fail("-n 0 generates nothing; give -n 1 or more, or -n -1 for until the context is full");
  for (const std::string& s : a.stop)
    if (s.empty()) usage_fail("--stop: an empty stop string would stop before the first token; give some text");
}

int64_t resolve_ctx(const GenerationArgs& a, const ModelConfig& cfg) {
  const int64_t limit = cfg.max_position_embeddings;
  if (!a.ctx) return limit > 0 ? std::min(kDefaultCtx, limit) : kDefaultCtx;
  if (limit > 0 && *a.ctx > limit)
    usage_fail("--ctx {} is longer than the model's limit of {} tokens (max_position_embeddings); use --ctx {} or less",
               *a.ctx, limit, limit);
  return *a.ctx;
}

void note_gpu_layers(const GenerationArgs& a, Device device) {
  if (a.n_gpu_layers == 0) return;
  if (device == Device::cpu)
    std::fprintf(stderr, "hlwq: note: -ngl %d has no effect: this run is on the CPU (--device cuda puts every layer "
                 "on the GPU)\n", a.n_gpu_layers);
  else
    std::fprintf(stderr, "hlwq: note: -ngl %d has no effect: with --device cuda every layer runs on the GPU\n",
                 a.n_gpu_layers);
}

const char* finish_label(FinishReason r) {
  switch (r) {
    case FinishReason::length: return "length";
    case FinishReason::eos:
    case FinishReason::stop_string: return "stop";
    case FinishReason::context: return "context";
    case FinishReason::cancelled: return "interrupted";
  }
  return "?";
}

void apply_threads(int threads) {
  threads = cap_thread_count(threads, stderr);  // libgomp crashes on -t 100000
  if (threads > 0) omp_set_num_threads(threads);
}

LoadOptions context_load_options(int64_t ctx, const DeviceArgs& device) {
  LoadOptions lo;
  apply_device_args(device, lo);
  lo.kv_tokens = ctx;
  return lo;
}

LoadedModel load_model_dir(const std::string& dir, const LoadOptions& lo) {
  Model m = Model::load(dir, lo);
  if (const std::string plan = m.backend().memory_plan(); !plan.empty()) std::fprintf(stderr, "%s\n", plan.c_str());
  const auto tok_path = fs::path(dir) / "tokenizer.json";
  HLWQ_CHECK(fs::exists(tok_path), "{}: missing tokenizer.json", dir);
  Tokenizer tok = Tokenizer::from_file(tok_path);
  HLWQ_CHECK(tok.vocab_size() <= m.config().vocab_size,
             "{}: tokenizer has {} ids but the model's vocabulary is {}", dir, tok.vocab_size(),
             m.config().vocab_size);
  return {dir, std::move(m), std::move(tok), ChatTemplate::from_model_dir(dir), load_eos_ids(dir)};
}

ResolvedGeneration resolve_generation(const GenerationArgs& a, const LoadedModel& m) {
  nlohmann::json gc = nlohmann::json::object();
  const std::string gc_path = (fs::path(m.dir) / "generation_config.json").string();
  if (fs::exists(gc_path)) {
    gc = read_json_file(gc_path);
    HLWQ_CHECK(gc.is_object(), "{}: expected a JSON object, got {}", gc_path, gc.type_name());
  }
  std::vector<std::string> from_file;
  // Given on the command line > generation_config.json > hlwq's default; remembers which keys the file supplied.
  auto pick = [&](auto given, auto from, auto fallback, const char* key) {
    if (given) return *given;
    if (from) {
      from_file.push_back(key);
      return *from;
    }
    return fallback;
  };
  ResolvedGeneration r;
  GenerateOptions& o = r.opt;
  SamplerConfig& s = o.sampler;
  s.temperature = pick(a.temp, config_value<float>(gc, "temperature", 0, 100, gc_path), 0.7f, "temperature");
  s.top_k = pick(a.top_k, config_value<int32_t>(gc, "top_k", 0, 1 << 30, gc_path), 20, "top_k");
  s.top_p = pick(a.top_p, config_value<float>(gc, "top_p", 1e-9, 1, gc_path), 0.95f, "top_p");
  s.min_p = pick(a.min_p, config_value<float>(gc, "min_p", 0, 1, gc_path), 0.0f, "min_p");
  s.repetition_penalty = pick(a.repeat_penalty, config_value<float>(gc, "repetition_penalty", 1e-9, 100, gc_path),
                              1.0f, "repetition_penalty");
  s.presence_penalty = a.presence_penalty;
  s.seed = a.seed >= 0 ? uint64_t(a.seed) : uint64_t(std::random_device{}());
  o.max_new_tokens = a.n_predict;  // -1 is resolved against the context by the caller
  o.eos_ids = m.eos_ids;
  // ChatML's turn end stops a chat turn even where the model's eos is <|endoftext|>.
  for (const char* t : {"<|im_end|>", "<|endoftext|>"})
    if (auto id = m.tok.token_id(t)) o.eos_ids.push_back(*id);
  o.stop_strings = a.stop;
  // load_model_dir allows a tokenizer smaller than the (padded) embedding: never sample an id it cannot print.
  o.n_valid_tokens = m.tok.vocab_size();

  r.summary = s.temperature == 0 ? std::string("greedy (temperature 0)")
                                 : fmt::format("temperature {:g}, top-k {}, top-p {:g}", s.temperature, s.top_k,
                                               s.top_p);
  if (s.min_p > 0) r.summary += fmt::format(", min-p {:g}", s.min_p);
  if (s.repetition_penalty != 1) r.summary += fmt::format(", repeat-penalty {:g}", s.repetition_penalty);
  if (!from_file.empty()) r.summary += fmt::format(" ({} from generation_config.json)", fmt::join(from_file, ", "));
  r.summary += fmt::format(", seed {}", s.seed);
  return r;
}

}  // namespace hlwq::cli
