// `hlwq eval ppl MODEL --text FILE` and `hlwq eval kld MODEL --base BASE --text FILE`: perplexity, and the KL
// divergence of a (quantized) model from its base, with the protocol of runtime/evaluate.h and the statistics of
// runtime/eval_stats.h (llama-perplexity's: every estimate with its standard error, KL and Δp percentiles).
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "core/error.h"
#include "io/read_file.h"
#include "runtime/evaluate.h"

namespace hlwq::cli {
namespace {

nlohmann::ordered_json result_json(const EvalResult& r) {
  const EvalStats& s = r.stats;
  nlohmann::ordered_json j = {{"ppl", s.ppl().value},         {"ppl_se", s.ppl().se},
                              {"scored_tokens", s.n()},       {"windows", r.n_windows},
                              {"tokens", r.n_tokens},         {"ctx", r.ctx},
                              {"seconds", r.seconds},         {"tokens_per_s", r.tokens_per_s()}};
  if (!s.with_base()) return j;
  j["base_ppl"] = s.base_ppl().value;
  j["base_ppl_se"] = s.base_ppl().se;
  j["delta_ppl"] = s.ppl().value - s.base_ppl().value;
  j["ln_ppl_ratio"] = s.ln_ppl_ratio().value;
  j["ln_ppl_ratio_se"] = s.ln_ppl_ratio().se;
  j["kld"] = s.kl().value;
  j["kld_se"] = s.kl().se;
  j["kld_median"] = s.kl_quantile(0.5);
  j["kld_p90"] = s.kl_quantile(0.9);
  j["kld_p99"] = s.kl_quantile(0.99);
  j["kld_p99_9"] = s.kl_quantile(0.999);
  j["kld_max"] = s.kl_quantile(1.0);
  j["top1_agree"] = s.top1().value;
  j["top1_agree_se"] = s.top1().se;
  j["delta_p_mean"] = s.delta_p().value;
  j["delta_p_se"] = s.delta_p().se;
  j["delta_p_rms"] = s.rms_delta_p();
  for (auto [key, q] : {std::pair{"delta_p_min", 0.0}, {"delta_p_p01", 0.01}, {"delta_p_p05", 0.05},
                        {"delta_p_median", 0.5}, {"delta_p_p95", 0.95}, {"delta_p_p99", 0.99}, {"delta_p_max", 1.0}})
    j[key] = s.delta_p_quantile(q);
  return j;
}

std::string result_text(const EvalResult& r) {
  const EvalStats& s = r.stats;
  const Estimate p = s.ppl();
  std::string out = fmt::format("ppl {:.4f} ± {:.4f} over {} scored tokens ({} windows of {}) in {:.1f}s, {:.0f} tok/s\n",
                                p.value, p.se, s.n(), r.n_windows, r.ctx, r.seconds, r.tokens_per_s());
  if (!s.with_base()) return out;
  const Estimate b = s.base_ppl(), k = s.kl(), t = s.top1(), d = s.delta_p(), l = s.ln_ppl_ratio();
  out += fmt::format("base ppl {:.4f} ± {:.4f}, ln(ppl/base ppl) {:.5f} ± {:.5f}\n", b.value, b.se, l.value, l.se);
  out += fmt::format("KL(base||model) mean {:.6f} ± {:.6f}, median {:.6f}, 90% {:.6f}, 99% {:.6f}, 99.9% {:.6f}, "
                     "max {:.6f}\n",
                     k.value, k.se, s.kl_quantile(0.5), s.kl_quantile(0.9), s.kl_quantile(0.99), s.kl_quantile(0.999),
                     s.kl_quantile(1.0));
  out += fmt::format("top-1 agreement {:.3f} ± {:.3f} %\n", 100 * t.value, 100 * t.se);
  out += fmt::format("Δp (model - base, true token) mean {:+.3f} ± {:.3f} %, RMS {:.3f} %, min {:+.3f} %, 1% {:+.3f} %, "
                     "5% {:+.3f} %, median {:+.3f} %, 95% {:+.3f} %, 99% {:+.3f} %, max {:+.3f} %\n",
                     100 * d.value, 100 * d.se, 100 * s.rms_delta_p(), 100 * s.delta_p_quantile(0),
                     100 * s.delta_p_quantile(0.01), 100 * s.delta_p_quantile(0.05), 100 * s.delta_p_quantile(0.5),
                     100 * s.delta_p_quantile(0.95), 100 * s.delta_p_quantile(0.99), 100 * s.delta_p_quantile(1));
  return out;
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "perplexity and KL divergence on a text");
  sub->require_subcommand(1);
  struct Args {
    std::string model, base, text;
    EvalOptions opt;
    bool json = false, quiet = false;
    int threads = 0;
    DeviceArgs device;
  };
  auto a = std::make_shared<Args>();
  auto* ppl = sub->add_subcommand("ppl", "perplexity of MODEL on --text");
  auto* kld = sub->add_subcommand("kld", "KL(base || MODEL), top-1 agreement, delta-p and delta-ppl on --text");
  for (auto* s : {ppl, kld}) {
    s->add_option("MODEL,-m,--model", a->model, "model directory")->required();
    s->add_option("--text,-f,--file", a->text, "UTF-8 text file")->required();
    s->add_option("-c,--ctx", a->opt.ctx, "window length in tokens")->capture_default_str()->check(whole_at_least(2));
    s->add_option("--max-windows", a->opt.max_windows, "score only the first N windows (0: all)")
        ->check(whole_at_least(0));
    s->add_flag("--json", a->json, "machine-readable result on stdout (no progress output)");
    s->add_flag("-q,--quiet", a->quiet, "no progress output");
    s->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(whole_in(0, 4096));
    add_device_options(s, a->device);
  }
  kld->add_option("--base", a->base, "the reference model directory (bf16)")->required();
  return {sub, [a, ppl] {
            check_model_dir(a->model);
            if (!ppl->parsed()) check_model_dir(a->base, "base model directory");
            const std::string text = read_text_file(a->text, "--text");
            const int64_t limit = load_model_config(a->model).max_position_embeddings;
            if (limit > 0 && a->opt.ctx > limit)
              usage_fail("--ctx {} is longer than the model's limit of {} tokens (max_position_embeddings)", a->opt.ctx,
                         limit);
            apply_threads(a->threads);
            LoadOptions lo = eval_load_options(a->opt);
            apply_device_args(a->device, lo);
            LoadedModel m = load_model_dir(a->model, lo);
            const std::vector<int32_t> ids = tokenize_corpus(m.tok, text);
            eval_window_count(int64_t(ids.size()), a->opt);  // a text shorter than a window fails before loading more
            a->opt.progress = !a->json && !a->quiet;
            EvalResult r = ppl->parsed() ? eval_ppl(m.model, ids, a->opt) : [&] {
              Model base = Model::load(a->base, lo);
              return eval_kld(m.model, base, ids, a->opt);
            }();
            if (a->json) {
              nlohmann::ordered_json j = {{"model", a->model}, {"text", a->text}};
              if (!ppl->parsed()) j["base"] = a->base;
              j.update(result_json(r));
              std::puts(j.dump(2).c_str());
            } else {
              std::fputs(result_text(r).c_str(), stdout);
            }
            return 0;
          }};
}

}  // namespace hlwq::cli
