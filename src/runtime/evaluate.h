// Perplexity and KL divergence on a text, with the protocol of ../shared/corpus/README.md: split the file on
// blank lines, tokenize each non-empty paragraph as paragraph + "\n\n" without special tokens, concatenate,
// cut into non-overlapping windows of ctx tokens (remainder dropped), score tokens 1..ctx-1 of each window
// given its prefix; PPL = exp(mean NLL). KL(base‖model) is averaged over the same scored positions.
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

PplResult eval_ppl(const Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt);
KldResult eval_kld(const Model& model, const Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt);

}  // namespace hlwq
