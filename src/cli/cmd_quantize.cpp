// `hlwq quantize SRC DST --format ct-int4 --method M`: bf16 Hugging Face checkpoint -> compressed-tensors INT4;
// `--format hlwq --bits B`: -> native HLWQ codes; `--format hlwq-q5`: -> the seed's layout. A seed hlwq-q5 SRC
// converts to ct-int4 the way the seed does (decode to bf16, then the INT4 method). `--calib FILE`: calibrated
// quantization (GPTQ with the model's own activations on FILE, docs/calibration.md) for ct-int4 and hlwq.
// `--bits-for REGEX=B` (hlwq): mixed widths, stored as quantization_config.overrides (docs/hlwq-format.md).
// `--ignore REGEX`: Linears kept in the source dtype (quantization_config.ignore), e.g. the Gated DeltaNet mixers.
#include <charconv>
#include <cstdio>
#include <regex>
#include <filesystem>
#include <vector>
#include <memory>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "calib/engine_calibration.h"
#include "core/error.h"
#include "io/hlwq_format.h"
#include "quant/quantize_model.h"

namespace hlwq::cli {

Command add_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand("quantize", "quantize a bf16 checkpoint to compressed-tensors INT4");
  struct Args {
    QuantizeOptions opt;
    std::string format = "ct-int4", method = "rtn", hlwq_scale = "ls", max_shard = "5GB";
    bool quiet = false;
    std::string calib, calib_mem = "8GB", gptq_scales = "during", calib_device, calib_gpu_memory;
    bool calib_gpu_memory_given = false;  // also when its value is empty (then refused, not ignored)
    int64_t calib_tokens = 65536, calib_ctx = 512, calib_gpu_bytes = 0;
    Device calib_engine = Device::cpu;
    bool unweighted = false;
    std::vector<std::string> bits_for;  // REGEX=B
  };
  auto a = std::make_shared<Args>();
  sub->add_option("SRC", a->opt.src, "source model directory (config.json + safetensors)")->required();
  sub->add_option("DST", a->opt.dst, "output directory (written atomically)")->required();
  sub->add_option("--format", a->format,
                  "ct-int4 (compressed-tensors, vLLM), hlwq (native HLWQ codes, hlwq's engine), hlwq-q5 (the seed's "
                  "layout)")
      ->check(CLI::IsMember({"ct-int4", "hlwq", "hlwq-q5"}))
      ->capture_default_str();
  const std::vector<CLI::Option*> hlwq_opts = {
      sub->add_option("--bits", a->opt.hlwq_bits, "hlwq: bits per code")->check(CLI::Range(2, 8))->capture_default_str(),
      sub->add_option("--bits-for", a->bits_for,
                      "hlwq: REGEX=B gives the quantized modules whose name REGEX matches (from the start, like "
                      "'ignore') B bits; repeatable, the first match decides")
          ->allow_extra_args(false),
      sub->add_option("--hlwq-scale", a->hlwq_scale, "hlwq: block scale, ls (least squares) or l2 (the block's norm)")
          ->check(CLI::IsMember({"ls", "l2"}))
          ->capture_default_str()};
  sub->add_option("--ignore", a->opt.plan.ignore,
                  "REGEX: the Linears whose module name REGEX matches (from the start, with the rest of their "
                  "fusion group) stay in the source dtype, listed in quantization_config.ignore; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--method", a->method,
                  "rtn (seed: absmax/7), rtn-ct (absmax/7.5), mse (per-group MSE-optimal scale), "
                  "hlwq-cascade (seed: HLWQ-Q5 -> INT4), hlwq-cascade-lm5 (converged Q5 table)")
      ->capture_default_str();
  CLI::Option* method_opt = sub->get_option("--method");
  sub->add_option("--calib", a->calib,
                  "calibrated quantization (GPTQ) with the model's activations on this text (never an evaluation "
                  "text); ct-int4 and hlwq; --method is then the fallback (default mse)");
  std::vector<CLI::Option*> calib_opts = {
      sub->add_option("--calib-tokens", a->calib_tokens, "calibration tokens (whole windows)")
          ->check(CLI::Range(int64_t(1), int64_t(1) << 40))
          ->capture_default_str(),
      sub->add_option("--calib-ctx", a->calib_ctx, "calibration window length")
          ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
          ->capture_default_str(),
      sub->add_option("--calib-min-tokens", a->opt.calib_min_tokens,
                      "linears (routed experts) that saw fewer calibration tokens fall back to the calibration-free "
                      "method")
          ->check(CLI::Range(int64_t(1), int64_t(1) << 40))
          ->capture_default_str(),
      sub->add_option("--calib-mem", a->calib_mem,
                      "input statistics and GPTQ factors held at once (layers are calibrated in groups that fit)")
          ->capture_default_str(),
      sub->add_option("--calib-device", a->calib_device,
                      "where the model runs for the statistics (default: cuda when this build has it and a GPU is "
                      "visible, else cpu; --calib-sequential runs on the cpu)")
          ->check(CLI::IsMember({"cpu", "cuda"})),
      sub->add_option("--calib-gpu-memory", a->calib_gpu_memory,
                      "cuda: device memory for the model (its routed experts then wait in host memory behind a "
                      "cache, as run --gpu-memory); the rest holds the statistics")
          ->each([a](const std::string&) { a->calib_gpu_memory_given = true; }),
      sub->add_option("--gptq-damp", a->opt.gptq.damp, "GPTQ damping, relative to the mean of diag(H)")
          ->check(CLI::Range(1e-6, 10.0))
          ->capture_default_str(),
      sub->add_flag("--gptq-unweighted-scales", a->unweighted,
                    "group scales minimize the plain weight error, not the error weighted by each input's "
                    "importance"),
      sub->add_option("--gptq-refit", a->opt.gptq.refit,
                      "rounds of re-fitting each row's group scales to its codes by least squares on GPTQ's loss "
                      "(k > 1: the column loop again at the re-fit scales, then re-fit)")
          ->check(CLI::Range(0, 8))
          ->capture_default_str(),
      sub->add_flag("--calib-sequential", a->opt.calib_sequential,
                    "one calibration pass per layer on the activations of the model quantized so far (holds the "
                    "quantized weights in fp32: 4 bytes per parameter)"),
      sub->add_flag("--act-order", a->opt.gptq.act_order,
                    "GPTQ in order of decreasing input energy (group scales then chosen before the feedback)"),
      sub->add_option("--gptq-scales", a->gptq_scales,
                      "group scales chosen during the feedback (from the updated weights) or before it")
          ->check(CLI::IsMember({"during", "before"}))
          ->capture_default_str()};
  sub->add_flag("--language-model-only", a->opt.plan.language_model_only, "drop model.visual.* and mtp.* tensors");
  sub->add_flag("--quantize-lm-head", a->opt.plan.quantize_lm_head, "quantize lm_head too (kept bf16 by default)");
  sub->add_option("-t,--threads", a->opt.threads, "worker threads (default: all cores)")->check(whole_in(0, 4096));
  sub->add_option("--max-shard-size", a->max_shard, "largest output shard")->capture_default_str();
  sub->add_flag("--force", a->opt.force, "replace DST if it exists");
  sub->add_flag("-q,--quiet", a->quiet, "no progress bar");
  return {sub, [a, calib_opts, method_opt, hlwq_opts] {
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
    // --bits and --hlwq-scale shape native HLWQ codes only (hlwq-q5 is 5 bits with the seed's l2 norms)
    if (a->opt.format != QuantFormat::hlwq)
      for (const CLI::Option* o : hlwq_opts)
        if (o->count() > 0) usage_fail("{} applies to --format hlwq only, not --format {}", o->get_name(), a->format);
    a->opt.hlwq_scale = a->hlwq_scale == "l2" ? HlwqScale::l2_norm : HlwqScale::least_squares;
    for (const std::string& rb : a->bits_for) {  // REGEX=B: the last '=' splits (a regex may contain '=')
      const size_t eq = rb.rfind('=');
      if (eq == std::string::npos || eq == 0) usage_fail("--bits-for '{}': expected REGEX=B", rb);
      const std::string b = rb.substr(eq + 1);
      int bits = 0;
      const auto [end, ec] = std::from_chars(b.data(), b.data() + b.size(), bits);
      if (ec != std::errc() || end != b.data() + b.size() || bits < kHlwqMinBits || bits > kHlwqMaxBits)
        usage_fail("--bits-for '{}': B must be an integer in [{}, {}], got '{}'", rb, kHlwqMinBits, kHlwqMaxBits, b);
      try {
        std::regex(rb.substr(0, eq), std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        usage_fail("--bits-for '{}': bad regular expression '{}': {}", rb, rb.substr(0, eq), e.what());
      }
      a->opt.hlwq_bits_for.emplace_back(rb.substr(0, eq), bits);
    }
    if (a->opt.format == QuantFormat::hlwq_q5 && !a->opt.plan.ignore.empty())
      usage_fail("--ignore applies to --format ct-int4 and hlwq (the seed's hlwq-q5 layout has no ignore list)");
    for (const std::string& re : a->opt.plan.ignore) {
      try {
        std::regex(re, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        usage_fail("--ignore '{}': bad regular expression: {}", re, e.what());
      }
    }
    if (a->calib.empty()) {
      for (const CLI::Option* o : calib_opts)
        if (o->count() > 0) usage_fail("{} needs --calib FILE", o->get_name());
    } else {
      if (a->opt.format == QuantFormat::hlwq_q5)
        usage_fail("--calib: calibrated quantization writes ct-int4 or hlwq, not the seed's hlwq-q5 layout");
      if (method_opt->count() == 0) a->opt.method = Int4Method::mse;
      a->opt.gptq.scales = a->gptq_scales == "before" ? GptqScales::before : GptqScales::during;
      a->opt.gptq.weighted_scales = !a->unweighted;
      if (a->opt.gptq.act_order && a->gptq_scales == "during" && calib_opts.back()->count() > 0)
        usage_fail("--act-order needs --gptq-scales before (its column order crosses the groups)");
      a->opt.calib_max_bytes = parse_size_option(a->calib_mem, "--calib-mem");
      // sequential calibration substitutes weights into the CPU engine (engine_calibration.h)
      if (a->opt.calib_sequential && a->calib_device == "cuda")
        usage_fail("--calib-sequential runs the model on the cpu (it substitutes the quantized weights into it), "
                   "not --calib-device cuda");
      a->calib_engine = a->opt.calib_sequential ? Device::cpu : resolve_device(a->calib_device, "--calib-device");
      if (a->calib_gpu_memory_given) {  // a bad size is named before the device, as for --gpu-memory
        a->calib_gpu_bytes = parse_gpu_budget(a->calib_gpu_memory, "--calib-gpu-memory");
        if (a->calib_engine != Device::cuda) usage_fail("--calib-gpu-memory needs the model on cuda (--calib-device)");
      }
    }
    a->opt.max_shard_bytes = parse_size_option(a->max_shard, "--max-shard-size");
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
    std::unique_ptr<EngineCalibration> calib;  // outlives the report's formatting, which reads a->opt
    try {
      if (!a->calib.empty()) {
        CalibOptions co;
        co.model_dir = a->opt.src;
        co.text = read_text_file(a->calib, "--calib");
        co.text_name = a->calib;
        co.tokens = a->calib_tokens;
        co.ctx = a->calib_ctx;
        co.device = a->calib_engine;
        co.gpu_memory = a->calib_gpu_bytes;
        co.progress = !a->quiet;
        calib = std::make_unique<EngineCalibration>(co);
        a->opt.calib = calib.get();
      }
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
