// `hlwq synth --like TARGET DST [--layers L] [--format ct-int4|bf16] [--seed S] [--force]`: a checkpoint with the
// target's exact tensor names, shapes, dtypes and config, random weights, written at disk speed (synth/). The
// tokenizer copied in is the first that fits the model's vocabulary among: --tokenizer, the --like model's own,
// the Qwen3 tokenizer of the shared fixtures, the demo model's (models/tiny-moe-dev, from the working directory or
// the source tree).
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "core/progress.h"
#include "synth/synth_config.h"
#include "synth/synth_writer.h"

namespace hlwq::cli {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> model_search_dirs() { return {fs::path("models"), fs::path(HLWQ_SOURCE_DIR) / "models"}; }

}  // namespace

Command add_synth(CLI::App& app) {
  auto* sub = app.add_subcommand("synth", "write a random-weight checkpoint shaped exactly like a target model");
  struct Args {
    std::string like, dst, format = "ct-int4", tokenizer;
    int64_t layers = 0;
    uint64_t seed = 1;
    std::string max_shard = "5GB";
    int threads = 0;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("--like", a->like,
                  std::string("target: ") + kSynthQwen36 + ", a config.json, or a model directory (path or name "
                  "under models/, e.g. tiny-moe-dev)")
      ->required();
  sub->add_option("DST", a->dst, "output model directory (appears only when complete)")->required();
  sub->add_option("--layers", a->layers, "layers to write (default: the target's); the per-layer shapes and the "
                  "layer-kind pattern stay the target's")
      ->check(whole_in(1, 4096));
  sub->add_option("--format", a->format, "weights: ct-int4 (compressed-tensors W4A16 g128, as `hlwq quantize` "
                  "writes) or bf16")
      ->check(CLI::IsMember({"ct-int4", "bf16"}))
      ->capture_default_str();
  sub->add_option("--seed", a->seed, "value seed (same seed, same bytes)")->capture_default_str();
  sub->add_option("--tokenizer", a->tokenizer, "directory with tokenizer.json (+ tokenizer_config.json) to copy, or "
                  "'none' (default: the first whose ids fit the vocabulary of: the --like model's own, the Qwen3 tokenizer of "
                  "the shared fixtures, models/tiny-moe-dev's)");
  sub->add_option("--max-shard-bytes", a->max_shard, "largest shard (e.g. 5GB)")->capture_default_str();
  sub->add_option("-t,--threads", a->threads, "generator threads (default: all cores)")->check(whole_in(0, 4096));
  sub->add_flag("--force", a->force, "replace DST if it is an earlier hlwq output");
  return {sub, [a] {
            apply_threads(a->threads);
            nlohmann::json config;
            try {
              config = synth_like_config(a->like, model_search_dirs());
            } catch (const Error& e) {
              usage_fail("{}", e.what());  // a target that is not there is a command-line mistake
            }
            if (a->layers > 0) synth_set_layers(config, a->layers);
            synth_strip_quantization(config);
            const ModelConfig cfg = parse_model_config(config, "--like " + a->like);
            SynthOptions o;
            o.dst = a->dst;
            o.format = parse_synth_format(a->format);
            o.seed = a->seed;
            o.force = a->force;
            o.max_shard_bytes = parse_size_option(a->max_shard, "--max-shard-bytes");
            if (a->tokenizer == "none") {
            } else if (!a->tokenizer.empty()) {
              if (!fs::is_regular_file(fs::path(a->tokenizer) / "tokenizer.json"))
                usage_fail("--tokenizer {}: no tokenizer.json there", a->tokenizer);
              o.tokenizer_dir = a->tokenizer;
            } else {
              std::vector<fs::path> candidates;
              if (fs::is_directory(a->like)) candidates.push_back(a->like);
              for (const fs::path& d : model_search_dirs())
                if (fs::is_directory(d / a->like)) candidates.push_back(d / a->like);
              candidates.push_back(fs::path(HLWQ_SHARED_DIR) / "fixtures/qwen3-tokenizer");
              for (const fs::path& d : model_search_dirs()) candidates.push_back(d / "tiny-moe-dev");
              o.tokenizer_dir = synth_pick_tokenizer(candidates, cfg.vocab_size);
            }
            std::fprintf(stderr, "synth: %s like %s, %lld layers, seed %llu, tokenizer %s\n", a->format.c_str(),
                         a->like.c_str(), static_cast<long long>(cfg.n_layers),
                         static_cast<unsigned long long>(a->seed),
                         o.tokenizer_dir ? o.tokenizer_dir->c_str() : "none (hlwq run needs one)");
            const SynthResult r = synth_write(config, o);
            std::printf("wrote %s: %s in %zu tensors, %zu shard%s, %s (%.2f GB/s)\n", a->dst.c_str(),
                        format_bytes(double(r.bytes)).c_str(), r.n_tensors, r.n_shards, r.n_shards == 1 ? "" : "s",
                        format_duration(r.seconds).c_str(), double(r.bytes) / r.seconds / 1e9);
            return 0;
          }};
}

}  // namespace hlwq::cli
