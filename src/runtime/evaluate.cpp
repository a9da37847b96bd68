#include "runtime/evaluate.h"

#include <algorithm>
#include <cmath>

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

double PplResult::ppl() const { return n_scored ? std::exp(nll_sum / double(n_scored)) : 0.0; }

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

namespace {

int64_t n_windows_of(const std::vector<int32_t>& ids, const EvalOptions& opt) {
  HLWQ_CHECK(opt.ctx >= 2, "--ctx {} is too small: a window needs at least 2 tokens", opt.ctx);
  int64_t n = int64_t(ids.size()) / opt.ctx;
  HLWQ_CHECK(n > 0, "the text has {} tokens, fewer than one window of {}", ids.size(), opt.ctx);
  if (opt.max_windows > 0) n = std::min(n, opt.max_windows);
  return n;
}

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
  const int64_t H = m.config().hidden_size, final_slot = m.config().n_layers + 1;
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
    fo.hidden_hook_slot = int(final_slot);
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

}  // namespace

PplResult eval_ppl(Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  const int64_t nw = n_windows_of(ids, opt), V = model.config().vocab_size, H = model.config().hidden_size;
  const int64_t ctx = opt.ctx, B = windows_in_flight(model, ctx);
  PplResult r;
  r.n_tokens = int64_t(ids.size());
  Progress prog("ppl", "windows", nw, nw * ctx * int64_t(sizeof(int32_t)), opt.progress ? stderr : nullptr);
  std::vector<Sequence> seqs(static_cast<size_t>(B));
  const int64_t R = eval_logit_rows(V);
  std::vector<float> hid, logits(size_t(R * V));  // [B·ctx, H], [R, V]
  std::vector<double> nll(static_cast<size_t>(R));
  for (int64_t w0 = 0; w0 < nw; w0 += B) {
    const int64_t nb = std::min(B, nw - w0);
    run_windows(model, seqs, ids, w0, nb, ctx, hid);
    // scored positions t = 0 .. ctx−2 of each window predict token t + 1; rows summed in order, so the result
    // does not depend on the thread count
    for (int64_t j = 0; j < nb; ++j) {
      const int32_t* win = ids.data() + (w0 + j) * ctx;
      for (int64_t t0 = 0; t0 + 1 < ctx; t0 += R) {
        const int64_t n = std::min(R, ctx - 1 - t0);
        model.lm_head(hid.data() + (j * ctx + t0) * H, n, logits.data());
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          const float* row = logits.data() + i * V;
          nll[size_t(i)] = logsumexp(row, V) - double(row[win[t0 + i + 1]]);
        }
        for (int64_t i = 0; i < n; ++i) r.nll_sum += nll[size_t(i)];
      }
      prog.add(1, ctx * int64_t(sizeof(int32_t)));
    }
  }
  r.n_scored = nw * (ctx - 1);
  r.n_windows = nw;
  prog.finish();
  r.seconds = prog.elapsed_s();
  return r;
}

KldResult eval_kld(Model& model, Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt) {
  HLWQ_CHECK(model.config().vocab_size == base.config().vocab_size,
             "model and base have different vocabularies ({} vs {})", model.config().vocab_size,
             base.config().vocab_size);
  const int64_t nw = n_windows_of(ids, opt), V = model.config().vocab_size, ctx = opt.ctx;
  const int64_t Hm = model.config().hidden_size, Hb = base.config().hidden_size;
  const int64_t B = std::min(windows_in_flight(model, ctx), windows_in_flight(base, ctx));
  KldResult r;
  Progress prog("kld", "windows", nw, nw * ctx * int64_t(sizeof(int32_t)), opt.progress ? stderr : nullptr);
  struct RowStats {
    double kld = 0, nll_model = 0, nll_base = 0;
    bool agree = false;
  };
  std::vector<Sequence> seqs_m(static_cast<size_t>(B)), seqs_b(static_cast<size_t>(B));
  const int64_t R = eval_logit_rows(V);
  std::vector<float> hm, hb, lm(size_t(R * V)), lb(size_t(R * V));  // [R, V] each
  std::vector<RowStats> rs(static_cast<size_t>(R));
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
          rs[size_t(i)] = RowStats{kl, lse_p - double(p[next]), lse_b - double(b[next]), argmax(p, V) == argmax(b, V)};
        }
        for (int64_t i = 0; i < n; ++i) {
          r.kld_sum += rs[size_t(i)].kld;
          r.top1_agree += rs[size_t(i)].agree;
          r.model.nll_sum += rs[size_t(i)].nll_model;
          r.base.nll_sum += rs[size_t(i)].nll_base;
        }
      }
      prog.add(1, ctx * int64_t(sizeof(int32_t)));
    }
  }
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
