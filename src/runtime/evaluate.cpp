#include "runtime/evaluate.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/parallel_errors.h"
#include "core/progress.h"

namespace hlwq {

std::vector<int32_t> tokenize_corpus(const Tokenizer& tok, const std::string& text) {
  // Python's str.split("\n\n") then "if chunk.strip()": paragraphs are the pieces between "\n\n" separators.
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    const std::string_view para(text.data() + start, end - start);
    if (para.find_first_not_of(" \t\n\r\f\v") != std::string_view::npos) {
      std::string p(para);
      p += "\n\n";
      auto piece = tok.encode(p, /*allow_special=*/false);
      ids.insert(ids.end(), piece.begin(), piece.end());
    }
    if (end == text.size()) break;
    start = end + 2;
  }
  return ids;
}

double PplResult::ppl() const { return n_scored ? std::exp(nll_sum / double(n_scored)) : 0.0; }

namespace {

// log_softmax of row [V] in place; returns nothing, row becomes log-probabilities (double accumulation).
void log_softmax(float* row, int64_t V) {
  float mx = row[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(row[i] - mx));
  const float lse = mx + float(std::log(sum));
  for (int64_t i = 0; i < V; ++i) row[i] -= lse;
}

int64_t argmax(const float* row, int64_t V) { return std::max_element(row, row + V) - row; }

int64_t n_windows_of(const std::vector<int32_t>& ids, const EvalOptions& opt) {
  HLWQ_CHECK(opt.ctx >= 2, "--ctx {} is too small: a window needs at least 2 tokens", opt.ctx);
  int64_t n = int64_t(ids.size()) / opt.ctx;
  HLWQ_CHECK(n > 0, "the text has {} tokens, fewer than one window of {}", ids.size(), opt.ctx);
  if (opt.max_windows > 0) n = std::min(n, opt.max_windows);
  return n;
}

// Runs one window and returns its log-probabilities [ctx, V].
void window_logprobs(const Model& m, const int32_t* w, int64_t ctx, std::vector<float>& lp) {
  const int64_t V = m.config().vocab_size;
  SequenceState st = m.new_state(ctx);  // first: it checks ctx against the model before anything is sized
  lp.resize(size_t(ctx * V));
  m.forward(w, ctx, st, lp.data(), forward_all_logits());
  for (int64_t t = 0; t < ctx; ++t) log_softmax(lp.data() + t * V, V);
}

}  // namespace

PplResult eval_ppl(const Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  const int64_t nw = n_windows_of(ids, opt), V = model.config().vocab_size, ctx = opt.ctx;
  PplResult r;
  r.n_tokens = int64_t(ids.size());
  Progress prog("ppl", "windows", nw, nw * ctx * int64_t(sizeof(int32_t)), opt.progress ? stderr : nullptr);
  // Windows are independent: one per thread (the forward's own parallel regions then run on the calling thread),
  // which keeps every core busy on small models. Per-window sums are added in window order, so the result does
  // not depend on the thread count.
  std::vector<double> nll(static_cast<size_t>(nw), 0.0);
  ParallelErrors errs;
#pragma omp parallel
  {
    std::vector<float> lp;  // [ctx, V] per thread
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < nw; ++w) {
      errs.run([&] {
        const int32_t* win = ids.data() + w * ctx;
        window_logprobs(model, win, ctx, lp);
        for (int64_t t = 0; t + 1 < ctx; ++t) nll[size_t(w)] -= double(lp[size_t(t * V + win[t + 1])]);
        prog.add(1, ctx * int64_t(sizeof(int32_t)));
      });
    }
  }
  errs.rethrow();
  for (double x : nll) r.nll_sum += x;
  HLWQ_CHECK(std::isfinite(r.nll_sum), "perplexity is not finite (NLL sum {}): the model produced NaN/Inf", r.nll_sum);
  r.n_scored = nw * (ctx - 1);
  r.n_windows = nw;
  prog.finish();
  r.seconds = prog.elapsed_s();
  return r;
}

KldResult eval_kld(const Model& model, const Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  HLWQ_CHECK(model.config().vocab_size == base.config().vocab_size,
             "model and base have different vocabularies ({} vs {})", model.config().vocab_size,
             base.config().vocab_size);
  const int64_t nw = n_windows_of(ids, opt), V = model.config().vocab_size, ctx = opt.ctx;
  KldResult r;
  Progress prog("kld", "windows", nw, nw * ctx * int64_t(sizeof(int32_t)), opt.progress ? stderr : nullptr);
  struct WindowStats {
    double kld = 0, nll_model = 0, nll_base = 0;
    int64_t agree = 0;
  };
  std::vector<WindowStats> ws(static_cast<size_t>(nw));  // one per window, reduced in order (thread-count independent)
  ParallelErrors errs;
#pragma omp parallel
  {
    std::vector<float> lp, lb;  // [ctx, V] log-probabilities of model and base
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < nw; ++w) {
      errs.run([&] {
        const int32_t* win = ids.data() + w * ctx;
        window_logprobs(model, win, ctx, lp);
        window_logprobs(base, win, ctx, lb);
        WindowStats& s = ws[size_t(w)];
        for (int64_t t = 0; t + 1 < ctx; ++t) {
          const float* p = lp.data() + t * V;
          const float* b = lb.data() + t * V;
          double kl = 0;
          for (int64_t i = 0; i < V; ++i) kl += std::exp(double(b[i])) * (double(b[i]) - double(p[i]));
          s.kld += kl;
          s.agree += argmax(p, V) == argmax(b, V);
          s.nll_model -= double(p[win[t + 1]]);
          s.nll_base -= double(b[win[t + 1]]);
        }
        prog.add(1, ctx * int64_t(sizeof(int32_t)));
      });
    }
  }
  errs.rethrow();
  for (const WindowStats& s : ws) {
    r.kld_sum += s.kld;
    r.top1_agree += s.agree;
    r.model.nll_sum += s.nll_model;
    r.base.nll_sum += s.nll_base;
  }
  HLWQ_CHECK(std::isfinite(r.kld_sum) && std::isfinite(r.model.nll_sum) && std::isfinite(r.base.nll_sum),
             "KL divergence or perplexity is not finite: a model produced NaN/Inf");
  for (PplResult* x : {&r.model, &r.base}) {
    x->n_scored = nw * (ctx - 1);
    x->n_windows = nw;
    x->n_tokens = int64_t(ids.size());
  }
  prog.finish();
  r.model.seconds = r.base.seconds = prog.elapsed_s();
  return r;
}

}  // namespace hlwq
