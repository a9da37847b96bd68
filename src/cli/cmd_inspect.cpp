// `hlwq inspect MODEL [--json] [--n-cpu-moe K]`: architecture, tensors by kind, quantization scheme and the GPU
// memory plan (under --n-cpu-moe K: the experts of the first K MoE layers left to the CPU, as run/serve place them).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "io/checkpoint_summary.h"

namespace hlwq::cli {

Command add_inspect(CLI::App& app) {
  auto* sub = app.add_subcommand("inspect", "describe a checkpoint and its memory plan");
  struct Args {
    std::string model;
    bool json = false;
    int64_t n_cpu_moe = 0;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,-m,--model", a->model, "model directory")->required();
  sub->add_flag("--json", a->json, "machine-readable output (keys are identifiers)");
  sub->add_option("--n-cpu-moe", a->n_cpu_moe, "the plan with the routed experts of the first K MoE layers on the CPU")
      ->check(whole_in(0, 1 << 20));
  return {sub, [a] {
            check_model_dir(a->model);
            const ModelConfig cfg = load_model_config(a->model);
            Checkpoint ck(a->model);
            const CheckpointSummary s = summarize_checkpoint(cfg, ck);
            if (a->n_cpu_moe > s.n_moe_layers)
              usage_fail("--n-cpu-moe {}: the model has {} MoE layers (K must be in 0..{})", a->n_cpu_moe,
                         s.n_moe_layers, s.n_moe_layers);
            if (a->json) std::puts(checkpoint_summary_json(cfg, s, a->n_cpu_moe).dump(2).c_str());
            else std::fputs(format_checkpoint_summary(cfg, s, a->n_cpu_moe).c_str(), stdout);
            return 0;
          }};
}

}  // namespace hlwq::cli
