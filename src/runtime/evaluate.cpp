#include "runtime/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
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

// Windows that can run at once in m: one sequence each, all in one batch, all in the KV pool.
int64_t windows_in_flight(const Model& m, int64_t ctx) {
  const LoadOptions& lo = m.options();
  const int64_t by_batch = std::max<int64_t>(1, lo.max_batch_tokens / std::min(ctx, lo.max_batch_tokens));
  const int64_t by_pool = m.pool().config().kv_blocks / ((ctx + lo.kv_block_tokens - 1) / lo.kv_block_tokens);
  HLWQ_CHECK(by_pool >= 1, "the model was loaded with a KV pool of {} tokens, too small for windows of {} (load it "
             "with eval_load_options)", m.pool().config().kv_blocks * lo.kv_block_tokens, ctx);
  return std::min({by_batch, by_pool, int64_t(lo.max_seqs)});
}

// Runs windows [w0, w0 + nb) of ids through m; hid [nb·ctx, H] = their hidden states after the final norm.
// Each window is one sequence of the batch; a window longer than a batch runs as consecutive batches.
void run_windows(Model& m, std::vector<Sequence>& seqs, const std::vector<int32_t>& ids, int64_t w0, int64_t nb,
                 int64_t ctx, std::vector<float>& hid) {
  const int64_t H = m.config().hidden_size;
  const int64_t per = std::max<int64_t>(1, m.options().max_batch_tokens / nb);
  hid.resize(size_t(nb * ctx * H));
  std::vector<SeqInput> in(static_cast<size_t>(nb));
  for (int64_t j = 0; j < nb; ++j) {
    if (!seqs[size_t(j)]) seqs[size_t(j)] = m.new_sequence(ctx);
    seqs[size_t(j)].reset();
  }
  for (int64_t off = 0; off < ctx; off += per) {
    const int64_t len = std::min(per, ctx - off);
    for (int64_t j = 0; j < nb; ++j)
      in[size_t(j)] = SeqInput{&seqs[size_t(j)], {ids.data() + (w0 + j) * ctx + off, size_t(len)}, LogitsWanted::none};
    ForwardOptions fo;
    fo.hidden_hook_slot = int(m.config().n_layers + 1);  // after the final norm
    fo.hidden_hook = [&](int, int64_t, const float* h, int64_t) {
      for (int64_t j = 0; j < nb; ++j)  // batch rows of window j: [j·len, (j + 1)·len)
        std::copy(h + j * len * H, h + (j + 1) * len * H, hid.begin() + (j * ctx + off) * H);
    };
    m.forward_batch(in, nullptr, fo);
  }
}

// Log-sum-exp of row [V] (double accumulation).
double logsumexp(const float* row, int64_t V) {
  float mx = row[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(row[i] - mx));
  return double(mx) + std::log(sum);
}

int64_t argmax(const float* row, int64_t V) { return std::max_element(row, row + V) - row; }

// A model that produced NaN/Inf must not report a number as if it were a result.
void check_finite(const EvalResult& r) {
  const EvalStats& s = r.stats;
  HLWQ_CHECK(std::isfinite(s.mean_nll().value), "perplexity is not finite (mean NLL {}): the model produced NaN/Inf",
             s.mean_nll().value);
  if (s.with_base())
    HLWQ_CHECK(std::isfinite(s.kl().value) && std::isfinite(s.base_ppl().value),
               "KL divergence or the base perplexity is not finite: a model produced NaN/Inf");
}

// Windows reach the statistics in order; after each one the running value shows on the progress line (terminal)
// or as llama-perplexity's "[3]12.3456,".
class WindowFeed {
 public:
  WindowFeed(EvalStats& stats, int64_t n_windows, int64_t ctx, const char* label, bool progress)
      : stats_(stats), ctx_(ctx), log_(progress ? stderr : nullptr),
        prog_(label, "windows", n_windows, n_windows * ctx, log_, Progress::Amount::tokens) {
    if (log_ && !prog_.drawing())
      std::fprintf(log_, "%s: %lld windows of %lld tokens; running %s after each window:\n", label,
                   (long long)n_windows, (long long)ctx, stats.with_base() ? "mean KL" : "perplexity");
  }

  void window_done() {
    ++done_;
    prog_.add(1, ctx_);
    prog_.set_status(stats_.running_text());
    if (log_ && !prog_.drawing()) {
      std::fprintf(log_, "[%lld]%.4f,", (long long)done_, stats_.running_value());
      std::fflush(log_);
    }
  }

  double finish() {
    prog_.finish();
    if (log_ && !prog_.drawing()) std::fputc('\n', log_);
    return prog_.elapsed_s();
  }

 private:
  EvalStats& stats_;
  int64_t ctx_, done_ = 0;
  FILE* log_;
  Progress prog_;
};

}  // namespace

int64_t eval_logit_rows(int64_t V) { return std::clamp<int64_t>(kEvalLogitBytes / (4 * V), 8, 256); }

LoadOptions eval_load_options(const EvalOptions& opt) {
  LoadOptions lo;
  // Windows in flight: enough tokens per batch to keep every core busy on small models, at most 8 windows.
  const int64_t per = std::clamp<int64_t>(opt.ctx, 1, kDefaultMaxBatchTokens);
  lo.max_seqs = int32_t(std::clamp<int64_t>(kDefaultMaxBatchTokens / per, 1, 8));
  const int64_t blocks = (opt.ctx + lo.kv_block_tokens - 1) / lo.kv_block_tokens;
  lo.kv_tokens = lo.max_seqs * blocks * lo.kv_block_tokens;
  lo.max_batch_tokens = kDefaultMaxBatchTokens;
  return lo;
}

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

EvalResult eval_ppl(Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  const int64_t nw = eval_window_count(int64_t(ids.size()), opt), V = model.config().vocab_size;
  const int64_t H = model.config().hidden_size, ctx = opt.ctx, B = windows_in_flight(model, ctx);
  const int64_t R = eval_logit_rows(V);
  EvalResult r{EvalStats(false), nw, int64_t(ids.size()), ctx, 0};
  WindowFeed feed(r.stats, nw, ctx, "ppl", opt.progress);
  std::vector<Sequence> seqs(static_cast<size_t>(B));
  std::vector<float> hid, logits(size_t(R * V));  // [B·ctx, H], [R, V]
  std::vector<TokenScore> scores(static_cast<size_t>(R));
  for (int64_t w0 = 0; w0 < nw; w0 += B) {
    const int64_t nb = std::min(B, nw - w0);
    run_windows(model, seqs, ids, w0, nb, ctx, hid);
    // scored positions t = 0 .. ctx−2 of each window predict token t + 1
    for (int64_t j = 0; j < nb; ++j) {
      const int32_t* win = ids.data() + (w0 + j) * ctx;
      for (int64_t t0 = 0; t0 + 1 < ctx; t0 += R) {
        const int64_t n = std::min(R, ctx - 1 - t0);
        model.lm_head(hid.data() + (j * ctx + t0) * H, n, logits.data());
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          const float* row = logits.data() + i * V;
          scores[size_t(i)] = TokenScore{};
          scores[size_t(i)].nll = logsumexp(row, V) - double(row[win[t0 + i + 1]]);
        }
        for (int64_t i = 0; i < n; ++i) r.stats.add(scores[size_t(i)]);
      }
      feed.window_done();
    }
  }
  r.seconds = feed.finish();
  check_finite(r);
  return r;
}

EvalResult eval_kld(Model& model, Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  HLWQ_CHECK(model.config().vocab_size == base.config().vocab_size,
             "model and base have different vocabularies ({} vs {})", model.config().vocab_size,
             base.config().vocab_size);
  const int64_t nw = eval_window_count(int64_t(ids.size()), opt), V = model.config().vocab_size, ctx = opt.ctx;
  const int64_t Hm = model.config().hidden_size, Hb = base.config().hidden_size;
  const int64_t B = std::min(windows_in_flight(model, ctx), windows_in_flight(base, ctx)), R = eval_logit_rows(V);
  EvalResult r{EvalStats(true), nw, int64_t(ids.size()), ctx, 0};
  WindowFeed feed(r.stats, nw, ctx, "kld", opt.progress);
  std::vector<Sequence> seqs_m(static_cast<size_t>(B)), seqs_b(static_cast<size_t>(B));
  std::vector<float> hm, hb, lm(size_t(R * V)), lb(size_t(R * V));  // hidden [B·ctx, H]; logits [R, V]
  std::vector<TokenScore> scores(static_cast<size_t>(R));
  for (int64_t w0 = 0; w0 < nw; w0 += B) {
    const int64_t nb = std::min(B, nw - w0);
    run_windows(model, seqs_m, ids, w0, nb, ctx, hm);
    run_windows(base, seqs_b, ids, w0, nb, ctx, hb);
    for (int64_t j = 0; j < nb; ++j) {
      const int32_t* win = ids.data() + (w0 + j) * ctx;
      for (int64_t t0 = 0; t0 + 1 < ctx; t0 += R) {
        const int64_t n = std::min(R, ctx - 1 - t0);
        model.lm_head(hm.data() + (j * ctx + t0) * Hm, n, lm.data());
        base.lm_head(hb.data() + (j * ctx + t0) * Hb, n, lb.data());
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          const float* p = lm.data() + i * V;
          const float* b = lb.data() + i * V;
          const double lse_p = logsumexp(p, V), lse_b = logsumexp(b, V);
          double kl = 0;
          for (int64_t v = 0; v < V; ++v) {
            const double lb_v = double(b[v]) - lse_b;
            kl += std::exp(lb_v) * (lb_v - (double(p[v]) - lse_p));
          }
          const int32_t next = win[t0 + i + 1];
          TokenScore& s = scores[size_t(i)];
          s.kl = kl;
          s.top1_agree = argmax(p, V) == argmax(b, V);
          s.nll = lse_p - double(p[next]);
          s.nll_base = lse_b - double(b[next]);
          s.p_model = std::exp(-s.nll);
          s.p_base = std::exp(-s.nll_base);
        }
        for (int64_t i = 0; i < n; ++i) r.stats.add(scores[size_t(i)]);
      }
      feed.window_done();
    }
  }
  r.seconds = feed.finish();
  check_finite(r);
  return r;
}

}  // namespace hlwq
