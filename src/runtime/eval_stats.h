// Statistics of an evaluation, as llama-perplexity reports them, from per-position values alone (the logit
// computation lives in evaluate.cpp and only hands positions over, in window order, so results do not depend on
// the thread count). Per scored position: the negative log-likelihood of the true next token under the model;
// with a base model also its NLL under the base, KL(base || model) over the vocabulary, the probabilities
// p_model and p_base of the true token, and whether both argmaxes agree.
// Uncertainties are standard errors of a mean over N positions, sqrt(var / (N - 1)) with the population variance,
// as llama-perplexity computes them; PPL = exp(mean NLL) has standard error PPL * se(mean NLL) (delta method).
// Quantiles interpolate linearly between order statistics (numpy's default).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hlwq {

struct TokenScore {
  double nll = 0;
  // with a base model only:
  double nll_base = 0, kl = 0, p_model = 0, p_base = 0;
  bool top1_agree = false;
};

struct Estimate {
  double value = 0, se = 0;  // se: standard error (0 with fewer than 2 positions)
};

class EvalStats {
 public:
  explicit EvalStats(bool with_base) : with_base_(with_base) {}
  void add(const TokenScore& s);
  bool with_base() const { return with_base_; }
  int64_t n() const { return n_; }

  Estimate ppl() const;       // exp(mean NLL)
  Estimate mean_nll() const;
  Estimate base_ppl() const;  // with_base only
  Estimate kl() const;        // mean KL(base || model)
  Estimate top1() const;      // fraction of positions whose argmaxes agree
  Estimate delta_p() const;   // mean of p_model - p_base of the true token
  Estimate ln_ppl_ratio() const;  // mean of nll - nll_base = ln(PPL / PPL_base)
  double rms_delta_p() const;
  // q in [0, 1] over the positions seen so far (sorts a copy: call at the end, not per position).
  double kl_quantile(double q) const;
  double delta_p_quantile(double q) const;

  // One running figure for progress output: "12.3456" (ppl) or "0.2031" (KL).
  double running_value() const;
  std::string running_text() const;  // "ppl 12.35 ± 0.21" or "KL 0.2031 ± 0.0040"

 private:
  struct Moments {  // sums for a mean and its standard error
    double sum = 0, sum2 = 0;
    void add(double x) { sum += x, sum2 += x * x; }
    Estimate of(int64_t n) const;
  };
  bool with_base_;
  int64_t n_ = 0, agree_ = 0;
  Moments nll_, nll_base_, kl_, dp_, lnr_;
  std::vector<double> kls_, dps_;  // per position, for quantiles
};

}  // namespace hlwq
