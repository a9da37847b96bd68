// Perplexity and KL divergence on a text, with the protocol of ../shared/corpus/README.md: split the file on
// blank lines, tokenize each non-empty paragraph as paragraph + "\n\n" without special tokens, concatenate,
// cut into non-overlapping windows of ctx tokens (remainder dropped), score tokens 1..ctx-1 of each window
// given its prefix; PPL = exp(mean NLL). KL(base‖model) is averaged over the same scored positions.
// This file computes per-position values (runtime/eval_stats.h turns them into estimates with uncertainties);
// windows run in parallel and reach the statistics in window order, so results do not depend on the threads.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/eval_stats.h"
#include "runtime/tokenizer.h"

namespace hlwq {

std::vector<int32_t> tokenize_corpus(const Tokenizer& tok, const std::string& text);

struct EvalOptions {
  int64_t ctx = 512;
  int64_t max_windows = 0;  // 0: all
  bool progress = true;     // progress line (terminal) and running per-window values on stderr
};

struct EvalResult {
  EvalStats stats;
  int64_t n_windows = 0, n_tokens = 0, ctx = 0;
  double seconds = 0;
  double tokens_per_s() const { return seconds > 0 ? double(n_windows * ctx) / seconds : 0; }
};

// Windows of `ids` the options score; an error that says how to fix it when the text is shorter than a window.
int64_t eval_window_count(int64_t n_tokens, const EvalOptions& opt);
EvalResult eval_ppl(const Model& model, const std::vector<int32_t>& ids, const EvalOptions& opt);
EvalResult eval_kld(const Model& model, const Model& base, const std::vector<int32_t>& ids, const EvalOptions& opt);

}  // namespace hlwq
