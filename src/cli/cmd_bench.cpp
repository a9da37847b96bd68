// `hlwq bench MODEL [--device cpu|cuda] [--moe-expert-cache-size N] [--gpu-memory SIZE] [--moe-prefetch on|off|auto]
// [--moe-stream-min-tokens N] [--max-num-batched-tokens N]
// [--route-trace FILE] [--batch B] [--prompt-len P] [--gen-len G] [--json] [-t N]`: prefill and decode tok/s,
// weight GB/s and the fraction of the speed of light against ceilings measured in the same run (perf/model_bench.h
// says what is counted and how).
// `hlwq bench MODEL --route-trace-gen OUT [--trace-steps N] [--trace-seqs B] [--trace-zipf S --trace-reuse P]
// [--trace-seed X]` writes a routing trace (moe/route_trace.h) shaped for MODEL's MoE layers, experts and top-k
// instead of benchmarking; without --trace-zipf/--trace-reuse both are fitted so that an LRU of 12.5 % / 25 % of
// the experts per layer hits 67 % / 81 % (llama.cpp PR #27861's Qwen3-Next figures, scaled by N/E).
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "io/hf_config.h"
#include "moe/route_trace.h"
#include "perf/model_bench.h"

namespace hlwq::cli {
namespace {

struct TraceGenArgs {
  std::string out;
  int steps = 8192, seqs = 1;
  double zipf = -1, reuse = -1;  // −1: fitted
  uint64_t seed = 1;
};

int generate_trace(const std::string& model, const TraceGenArgs& g) {
  const ModelConfig cfg = load_model_config(model);
  RouteTraceParams p;
  p.n_layers = int(cfg.n_layers), p.n_experts = int(cfg.n_experts), p.top_k = int(cfg.n_experts_active);
  p.n_seqs = g.seqs, p.n_steps = g.steps, p.seed = g.seed;
  if ((g.zipf < 0) != (g.reuse < 0)) usage_fail("--trace-zipf and --trace-reuse go together (or neither: fitted)");
  if (g.zipf < 0) {
    const RouteTraceFit f = fit_route_trace(p.n_experts, p.top_k, default_route_trace_targets());
    p.zipf = f.zipf, p.reuse = f.reuse;
    std::fprintf(stderr, "fitted for %d experts top-%d: zipf %.3f, reuse %.3f → LRU hits %.1f %% at %ld slots, %.1f %% "
                 "at %ld slots (targets 67 %% and 81 %%)\n", p.n_experts, p.top_k, p.zipf, p.reuse,
                 100 * f.achieved[0], std::lround(0.125 * p.n_experts), 100 * f.achieved[1],
                 std::lround(0.25 * p.n_experts));
  } else {
    p.zipf = g.zipf, p.reuse = g.reuse;
  }
  const RouteTrace t = generate_route_trace(p);
  write_route_trace(g.out, t);
  std::printf("wrote %s: %s\n", g.out.c_str(), t.describe().c_str());
  return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "measure prefill and decode speed against the device's measured ceilings");
  struct Args {
    std::string model;
    DeviceArgs device;
    BenchOptions o;
    TraceGenArgs gen;
    int threads = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,-m,--model", a->model, "model directory")->required();
  add_device_options(sub, a->device);
  sub->add_option("--moe-stream-min-tokens", a->o.moe_stream_min_tokens,
                  "with an expert cache (cuda): batches of at least N tokens stream each layer's missing experts once "
                  "through staging buffers; 0: never")
      ->check(whole_in(0, 1 << 22))
      ->capture_default_str();
  // serve's option: with an expert cache, a prefill streams each layer's missing experts once per chunk, so larger
  // chunks move fewer bytes per token (and take a larger workspace from the --gpu-memory budget)
  sub->add_option("--max-num-batched-tokens", a->o.max_batch_tokens, "tokens of one forward batch: prefill runs in "
                  "chunks of this many")
      ->check(whole_in(16, 1 << 16))
      ->capture_default_str();
  sub->add_option("--route-trace", a->o.route_trace, "replay this routing trace instead of the model's routing")
      ->check(CLI::ExistingFile);
  sub->add_option("--route-trace-gen", a->gen.out, "write a routing trace for MODEL to this file and exit");
  sub->add_option("--trace-steps", a->gen.steps, "--route-trace-gen: steps (token rows per sequence)")
      ->check(whole_in(1, 1 << 22))
      ->capture_default_str();
  sub->add_option("--trace-seqs", a->gen.seqs, "--route-trace-gen: sequences (match the decode --batch)")
      ->check(whole_in(1, 1024))
      ->capture_default_str();
  sub->add_option("--trace-zipf", a->gen.zipf, "--route-trace-gen: popularity skew (default: fitted)")
      ->check(CLI::Range(0.0, 10.0));
  sub->add_option("--trace-reuse", a->gen.reuse, "--route-trace-gen: P(keep a previous-step expert) (default: fitted)")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--trace-seed", a->gen.seed, "--route-trace-gen: seed")->capture_default_str();
  sub->add_option("--batch", a->o.batch, "decode sequences stepping together")->check(whole_in(1, 1024))
      ->capture_default_str();
  sub->add_option("--prompt-len", a->o.prompt_len, "prefill tokens (one sequence)")->check(whole_in(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--more-prompt-lens", a->o.more_prompt_lens, "further prefill lengths, each measured too")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  sub->add_option("--gen-len", a->o.gen_len, "decode steps per timed run")->check(whole_in(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--decode-prompt-len", a->o.decode_prompt_len, "prompt of each decode sequence")
      ->check(whole_in(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--warmup", a->o.warmup, "untimed runs first")->check(whole_in(0, 100))->capture_default_str();
  sub->add_option("--repeats", a->o.repeats, "timed runs (the median is reported)")->check(whole_in(1, 1000))
      ->capture_default_str();
  sub->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(whole_in(0, 4096));
  sub->add_flag("--json", a->json, "print one JSON object");
  return {sub, [a] {
            check_model_dir(a->model);
            if (!a->gen.out.empty()) {
              if (!a->o.route_trace.empty()) usage_fail("--route-trace-gen writes a trace; --route-trace replays one");
              return generate_trace(a->model, a->gen);
            }
            apply_threads(a->threads);
            LoadOptions lo;
            apply_device_args(a->device, lo);
            a->o.device = lo.device;
            a->o.moe_expert_cache_size = lo.moe_expert_cache_size;
            a->o.gpu_memory = lo.gpu_memory;
            a->o.moe_prefetch = lo.moe_prefetch;
            a->o.cpu_experts = lo.cpu_experts;
            a->o.n_cpu_moe = lo.n_cpu_moe;
            const BenchResult r = run_model_bench(a->model, a->o);
            if (a->json) std::puts(bench_result_json(r).dump(2).c_str());
            else std::fputs(format_bench_result(r).c_str(), stdout);
            return 0;
          }};
}

}  // namespace hlwq::cli
