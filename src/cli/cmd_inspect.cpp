// `hlwq inspect MODEL [--json]`: architecture, tensors by kind, quantization scheme and the GPU memory plan.
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
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,-m,--model", a->model, "model directory")->required();
  sub->add_flag("--json", a->json, "machine-readable output (keys are identifiers)");
  return {sub, [a] {
            check_model_dir(a->model);
            const ModelConfig cfg = load_model_config(a->model);
            Checkpoint ck(a->model);
            const CheckpointSummary s = summarize_checkpoint(cfg, ck);
            if (a->json) std::puts(checkpoint_summary_json(cfg, s).dump(2).c_str());
            else std::fputs(format_checkpoint_summary(cfg, s).c_str(), stdout);
            return 0;
          }};
}

}  // namespace hlwq::cli
