// `hlwq eval ppl MODEL --text FILE` and `hlwq eval kld MODEL --base BASE --text FILE`: perplexity, and the KL
// divergence of a (quantized) model from its base, with the protocol of runtime/evaluate.h.
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/sampling_options.h"
#include "core/error.h"
#include "runtime/evaluate.h"

namespace hlwq::cli {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  HLWQ_CHECK(f.good(), "{}: cannot open the text", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json ppl_json(const PplResult& r) {
  return {{"ppl", r.ppl()}, {"scored_tokens", r.n_scored}, {"windows", r.n_windows}, {"tokens", r.n_tokens},
          {"seconds", r.seconds}};
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "perplexity and KL divergence on a text");
  sub->require_subcommand(1);
  struct Args {
    std::string model, base, text;
    EvalOptions opt;
    bool json = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* ppl = sub->add_subcommand("ppl", "perplexity of MODEL on --text");
  auto* kld = sub->add_subcommand("kld", "KL(base || MODEL), top-1 agreement and delta-ppl on --text");
  for (auto* s : {ppl, kld}) {
    s->add_option("MODEL", a->model, "model directory")->required();
    s->add_option("--text", a->text, "UTF-8 text file")->required();
    s->add_option("--ctx", a->opt.ctx, "window length in tokens")->capture_default_str()->check(CLI::PositiveNumber);
    s->add_option("--max-windows", a->opt.max_windows, "score only the first N windows (0: all)")
        ->check(CLI::NonNegativeNumber);
    s->add_flag("--json", a->json, "machine-readable result on stdout");
    s->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  }
  kld->add_option("--base", a->base, "the reference model directory (bf16)")->required();
  return {sub, [a, ppl] {
            apply_threads(a->threads);
            const std::string text = read_text(a->text);
            LoadedModel m = load_model_dir(a->model, eval_load_options(a->opt));
            const std::vector<int32_t> ids = tokenize_corpus(m.tok, text);
            a->opt.progress = !a->json;
            if (ppl->parsed()) {
              PplResult r = eval_ppl(m.model, ids, a->opt);
              if (a->json) {
                nlohmann::json j = ppl_json(r);
                j["model"] = a->model;
                j["text"] = a->text;
                j["ctx"] = a->opt.ctx;
                std::puts(j.dump(2).c_str());
              } else {
                std::printf("ppl %.4f over %lld scored tokens (%lld windows of %lld) in %.1fs, %.0f tok/s\n", r.ppl(),
                            (long long)r.n_scored, (long long)r.n_windows, (long long)a->opt.ctx, r.seconds,
                            r.seconds > 0 ? double(r.n_windows * a->opt.ctx) / r.seconds : 0.0);
              }
              return 0;
            }
            Model base = Model::load(a->base, eval_load_options(a->opt));
            KldResult r = eval_kld(m.model, base, ids, a->opt);
            const double dppl = r.model.ppl() - r.base.ppl();
            if (a->json) {
              nlohmann::json j = {{"model", a->model}, {"base", a->base},   {"text", a->text},
                                  {"ctx", a->opt.ctx}, {"kld", r.kld()},    {"top1_agree", r.top1()},
                                  {"ppl", r.model.ppl()}, {"base_ppl", r.base.ppl()}, {"delta_ppl", dppl},
                                  {"scored_tokens", r.model.n_scored}, {"seconds", r.model.seconds}};
              std::puts(j.dump(2).c_str());
            } else {
              std::printf("KL(base||model) %.5f  top-1 agreement %.4f  ppl %.4f vs base %.4f (delta %+.4f) over %lld "
                          "scored tokens\n",
                          r.kld(), r.top1(), r.model.ppl(), r.base.ppl(), dppl, (long long)r.model.n_scored);
            }
            return 0;
          }};
}

}  // namespace hlwq::cli
