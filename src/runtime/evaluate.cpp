#include "runtime/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>

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

// Runs one window and returns its log-probabilities [ctx, V].
void window_logprobs(const Model& m, const int32_t* w, int64_t ctx, std::vector<float>& lp) {
  const int64_t V = m.config().vocab_size;
  lp.resize(size_t(ctx * V));
  SequenceState st = m.new_state(ctx);
  m.forward(w, ctx, st, lp.data(), forward_all_logits());
  for (int64_t t = 0; t < ctx; ++t) log_softmax(lp.data() + t * V, V);
}

// Windows finish in any order (one per thread); their scores reach the statistics in window order, and each
// step forward shows the running value: on the progress line (terminal) or as llama-perplexity's "[3]12.3456,".
class InOrderFeed {
 public:
  InOrderFeed(EvalStats& stats, int64_t n_windows, int64_t ctx, const char* label, bool progress)
      : stats_(stats),
        pending_(size_t(n_windows)),
        ready_(size_t(n_windows), false),
        ctx_(ctx),
        log_(progress ? stderr : nullptr),
        prog_(label, "windows", n_windows, n_windows * ctx, log_, Progress::Amount::tokens) {
    if (log_ && !prog_.drawing())
      std::fprintf(log_, "%s: %lld windows of %lld tokens; running %s after each window:\n", label,
                   (long long)n_windows, (long long)ctx, stats.with_base() ? "mean KL" : "perplexity");
  }

  void done(int64_t w, std::vector<TokenScore> scores) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_[size_t(w)] = std::move(scores);
    ready_[size_t(w)] = true;
    prog_.add(1, ctx_);
    while (next_ < int64_t(ready_.size()) && ready_[size_t(next_)]) {
      for (const TokenScore& s : pending_[size_t(next_)]) stats_.add(s);
      pending_[size_t(next_)] = {};
      ++next_;
      prog_.set_status(stats_.running_text());
      if (log_ && !prog_.drawing()) {
        std::fprintf(log_, "[%lld]%.4f,", (long long)next_, stats_.running_value());
        std::fflush(log_);
      }
    }
  }

  double finish() {
    prog_.finish();
    if (log_ && !prog_.drawing()) std::fputc('\n', log_);
    return prog_.elapsed_s();
  }

 private:
  EvalStats& stats_;
  std::vector<std::vector<TokenScore>> pending_;
  std::vector<bool> ready_;
  int64_t next_ = 0, ctx_;
  FILE* log_;
  Progress prog_;
  std::mutex mu_;
};

}  // namespace

int64_t eval_window_count(int64_t n_tokens, const EvalOptions& opt) {
  HLWQ_CHECK(opt.ctx >= 2, "--ctx {} is too small: a window needs at least 2 tokens", opt.ctx);
  HLWQ_CHECK(n_tokens >= 2, "the text has {} token{}: nothing to score (a window needs at least 2)", n_tokens,
             n_tokens == 1 ? "" : "s");
  int64_t n = n_tokens / opt.ctx;
  HLWQ_CHECK(n > 0, "the text has {} tokens, fewer than one window of --ctx {}: use --ctx {} or less, or a longer text",
             n_tokens, opt.ctx, n_tokens);
  if (opt.max_windows > 0) n = std::min(n, opt.max_windows);
  return n;
}

EvalResult eval_ppl(const Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  const int64_t nw = eval_window_count(int64_t(ids.size()), opt), V = model.config().vocab_size, ctx = opt.ctx;
  EvalResult r{EvalStats(false), nw, int64_t(ids.size()), ctx, 0};
  InOrderFeed feed(r.stats, nw, ctx, "ppl", opt.progress);
  // Windows are independent: one per thread (the forward's own parallel regions then run on the calling thread),
  // which keeps every core busy on small models.
  ParallelErrors errs;
#pragma omp parallel
  {
    std::vector<float> lp;  // [ctx, V] per thread
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < nw; ++w) {
      errs.run([&] {
        const int32_t* win = ids.data() + w * ctx;
        window_logprobs(model, win, ctx, lp);
        std::vector<TokenScore> scores(size_t(ctx - 1));
        for (int64_t t = 0; t + 1 < ctx; ++t) scores[size_t(t)].nll = -double(lp[size_t(t * V + win[t + 1])]);
        feed.done(w, std::move(scores));
      });
    }
  }
  errs.rethrow();
  r.seconds = feed.finish();
  return r;
}

EvalResult eval_kld(const Model& model, const Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  HLWQ_CHECK(model.config().vocab_size == base.config().vocab_size,
             "model and base have different vocabularies ({} vs {})", model.config().vocab_size,
             base.config().vocab_size);
  const int64_t nw = eval_window_count(int64_t(ids.size()), opt), V = model.config().vocab_size, ctx = opt.ctx;
  EvalResult r{EvalStats(true), nw, int64_t(ids.size()), ctx, 0};
  InOrderFeed feed(r.stats, nw, ctx, "kld", opt.progress);
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
        std::vector<TokenScore> scores(size_t(ctx - 1));
        for (int64_t t = 0; t + 1 < ctx; ++t) {
          const float* p = lp.data() + t * V;
          const float* b = lb.data() + t * V;
          double kl = 0;
          for (int64_t i = 0; i < V; ++i) kl += std::exp(double(b[i])) * (double(b[i]) - double(p[i]));
          TokenScore& s = scores[size_t(t)];
          s.kl = kl;
          s.top1_agree = argmax(p, V) == argmax(b, V);
          s.nll = -double(p[win[t + 1]]);
          s.nll_base = -double(b[win[t + 1]]);
          s.p_model = std::exp(-s.nll);
          s.p_base = std::exp(-s.nll_base);
        }
        feed.done(w, std::move(scores));
      });
    }
  }
  errs.rethrow();
  r.seconds = feed.finish();
  return r;
}

}  // namespace hlwq
