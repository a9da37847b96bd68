// `hlwq quantize SRC DST --format ct-int4 --method M`: bf16 Hugging Face checkpoint -> compressed-tensors INT4;
// `--format hlwq --bits B`: -> native HLWQ codes; `--format hlwq-q5`: -> the seed's layout. A seed hlwq-q5 SRC
// converts to ct-int4 the way the seed does (decode to bf16, then the INT4 method).
#include <cstdio>
#include <filesystem>
#include <vector>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
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
  sub->add_option("-t,--threads", a->opt.threads, "worker threads (default: all cores)")->check(whole_in(0, 4096));
  sub->add_option("--max-shard-size", a->max_shard, "largest output shard")->capture_default_str();
  sub->add_flag("--force", a->opt.force, "replace DST if it exists");
  sub->add_flag("-q,--quiet", a->quiet, "no progress bar");
  return {sub, [a] {
    // The command line first (nothing is created before it is known to be right).
    try {
      a->opt.format = parse_quant_format(a->format);
    } catch (const Error& e) {
      usage_fail("--format: {}", e.what());
    }
    try {
      a->opt.method = parse_int4_method(a->method);
    } catch (const Error& e) {
      usage_fail("--method: {}", e.what());
    }
    a->opt.hlwq_scale = a->hlwq_scale == "l2" ? HlwqScale::l2_norm : HlwqScale::least_squares;
    try {
      a->opt.max_shard_bytes = parse_size(a->max_shard);
    } catch (const Error& e) {
      usage_fail("--max-shard-size: {}", e.what());
    }
    check_model_dir(a->opt.src, "source model directory");
    a->opt.progress = !a->quiet;
    // A missing parent of DST is created (as `mkdir -p` would), so `quantize SRC out/name` works in a fresh clone.
    std::filesystem::path dst = std::filesystem::path(a->opt.dst).lexically_normal();
    if (!dst.has_filename()) dst = dst.parent_path();  // "out/name/" names out/name
    const std::filesystem::path parent = dst.parent_path();
    // If the run fails, the directories made for it go again (fs::remove only removes them while empty).
    std::vector<std::filesystem::path> made;
    for (std::filesystem::path p = parent; !p.empty() && !std::filesystem::exists(p); p = p.parent_path())
      made.push_back(p);
    if (!made.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      HLWQ_CHECK(!ec, "{}: cannot create the parent directory {}: {}", a->opt.dst, parent.string(), ec.message());
    }
    QuantizeReport r;
    try {
      r = quantize_model(a->opt);
    } catch (...) {
      std::error_code ec;
      for (const auto& p : made) std::filesystem::remove(p, ec);
      throw;
    }
    std::fputs(format_quantize_report(r, a->opt).c_str(), stdout);
    return 0;
  }};
}

}  // namespace hlwq::cli
