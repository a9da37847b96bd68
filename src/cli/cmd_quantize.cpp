// `hlwq quantize SRC DST --format ct-int4 --method M`: bf16 Hugging Face checkpoint -> compressed-tensors INT4;
// `--format hlwq --bits B`: -> native HLWQ codes; `--format hlwq-q5`: -> the seed's layout. A seed hlwq-q5 SRC
// converts to ct-int4 the way the seed does (decode to bf16, then the INT4 method).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "quant/quantize_model.h"

namespace hlwq::cli {

Command add_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand("quantize", "quantize a bf16 checkpoint to compressed-tensors INT4");
  struct Args {
    QuantizeOptions opt;
    std::string format = "ct-int4", method = "rtn", hlwq_scale = "ls", max_shard = "5GB";
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("SRC", a->opt.src, "source model directory (config.json + safetensors)")->required();
  sub->add_option("DST", a->opt.dst, "output directory (written atomically)")->required();
  sub->add_option("--format", a->format,
                  "ct-int4 (compressed-tensors, vLLM), hlwq (native HLWQ codes, hlwq's engine), hlwq-q5 (the seed's "
                  "layout)")
      ->check(CLI::IsMember({"ct-int4", "hlwq", "hlwq-q5"}))
      ->capture_default_str();
  sub->add_option("--bits", a->opt.hlwq_bits, "hlwq: bits per code")->check(CLI::Range(2, 8))->capture_default_str();
  sub->add_option("--hlwq-scale", a->hlwq_scale, "hlwq: block scale, ls (least squares) or l2 (the block's norm)")
      ->check(CLI::IsMember({"ls", "l2"}))
      ->capture_default_str();
  sub->add_option("--method", a->method,
                  "rtn (seed: absmax/7), rtn-ct (absmax/7.5), mse (per-group MSE-optimal scale), "
                  "hlwq-cascade (seed: HLWQ-Q5 -> INT4), hlwq-cascade-lm5 (converged Q5 table)")
      ->capture_default_str();
  sub->add_flag("--language-model-only", a->opt.plan.language_model_only, "drop model.visual.* and mtp.* tensors");
  sub->add_flag("--quantize-lm-head", a->opt.plan.quantize_lm_head, "quantize lm_head too (kept bf16 by default)");
  sub->add_option("--threads", a->opt.threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
  sub->add_option("--max-shard-size", a->max_shard, "largest output shard")->capture_default_str();
  sub->add_flag("--force", a->opt.force, "replace DST if it exists");
  sub->add_flag("-q,--quiet", a->quiet, "no progress bar");
  return {sub, [a] {
    a->opt.format = parse_quant_format(a->format);
    a->opt.method = parse_int4_method(a->method);
    a->opt.hlwq_scale = a->hlwq_scale == "l2" ? HlwqScale::l2_norm : HlwqScale::least_squares;
    a->opt.max_shard_bytes = parse_size(a->max_shard);
    a->opt.progress = !a->quiet;
    QuantizeReport r = quantize_model(a->opt);
    std::fputs(format_quantize_report(r, a->opt).c_str(), stdout);
    return 0;
  }};
}

}  // namespace hlwq::cli
