// `hlwq bench MODEL [--device cpu|cuda] [--moe-expert-cache-size N] [--gpu-memory SIZE] [--batch B] [--prompt-len P] [--gen-len G] [--json] [-t N]`: prefill and
// decode tok/s, weight GB/s and the fraction of the speed of light against ceilings measured in the same run
// (perf/model_bench.h says what is counted and how).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "perf/model_bench.h"

namespace hlwq::cli {

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "measure prefill and decode speed against the device's measured ceilings");
  struct Args {
    std::string model;
    DeviceArgs device;
    BenchOptions o;
    int threads = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,-m,--model", a->model, "model directory")->required();
  add_device_options(sub, a->device);
  sub->add_option("--batch", a->o.batch, "decode sequences stepping together")->check(whole_in(1, 1024))
      ->capture_default_str();
  sub->add_option("--prompt-len", a->o.prompt_len, "prefill tokens (one sequence)")->check(whole_in(1, 1 << 20))
      ->capture_default_str();
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
            apply_threads(a->threads);
            LoadOptions lo;
            apply_device_args(a->device, lo);
            a->o.device = lo.device;
            a->o.moe_expert_cache_size = lo.moe_expert_cache_size;
            a->o.gpu_memory = lo.gpu_memory;
            a->o.cpu_experts = lo.cpu_experts;
            a->o.n_cpu_moe = lo.n_cpu_moe;
            const BenchResult r = run_model_bench(a->model, a->o);
            if (a->json) std::puts(bench_result_json(r).dump(2).c_str());
            else std::fputs(format_bench_result(r).c_str(), stdout);
            return 0;
          }};
}

}  // namespace hlwq::cli
