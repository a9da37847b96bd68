// Perplexity and KL divergence on a text, with the protocol of ../shared/corpus/README.md: split the file on
// blank lines, tokenize each non-empty paragraph as paragraph + "\n\n" without special tokens, concatenate,
// cut into non-overlapping windows of ctx tokens (remainder dropped), score tokens 1..ctx-1 of each window
// given its prefix; PPL = exp(mean NLL). KL(base‖model) is averaged over the same scored positions.
// Memory: windows run as sequences of one batched forward that keeps only their final hidden states [ctx, H];
// logits are made a few rows at a time (at most kEvalLogitBytes of them) and reduced at once with a streaming
// log-softmax, so a 248k vocabulary at --ctx 4096 needs ~64 MB of logits per model, never [ctx, V].
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/tokenizer.h"

namespace hlwq {

std::vector<int32_t> tokenize_corpus(const Tokenizer& tok, const std::string& text);

struct EvalOptions {
  int64_t ctx = 512;
  int64_t max_windows = 0;  // 0: all
  bool progress = true;
};

// Bytes of logits made at once while scoring: rows = kEvalLogitBytes / (4·V), clamped to [8, 256]. Fewer rows
// re-read the lm_head more often (each call decodes its weight panels once).
constexpr int64_t kEvalLogitBytes = int64_t(64) << 20;
int64_t eval_logit_rows(int64_t vocab_size);

// How to load a model for evaluation with opt: windows in flight as sequences of one batch, KV pool for them.
LoadOptions eval_load_options(const EvalOptions& opt);

struct PplResult {
  double nll_sum = 0;
  int64_t n_scored = 0, n_windows = 0, n_tokens = 0;
  double seconds = 0;
  double ppl() const;
};

struct KldResult {
  PplResult model, base;
  double kld_sum = 0;      // Σ KL(base‖model) over scored positions
  int64_t top1_agree = 0;  // positions where both argmaxes match
  double kld() const { return model.n_scored ? kld_sum / double(model.n_scored) : 0; }
  double top1() const { return model.n_scored ? double(top1_agree) / double(model.n_scored) : 0; }
};

// The models must be loaded with eval_load_options(opt) (or at least as many sequences and KV positions).
PplResult eval_ppl(Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt);
KldResult eval_kld(Model& model, Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt);

}  // namespace hlwq
