#include "runtime/eval_stats.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace hlwq {
namespace {

double quantile(std::vector<double> v, double q) {
  HLWQ_CHECK(q >= 0 && q <= 1, "quantile {} is outside [0, 1]", q);
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

}  // namespace

Estimate EvalStats::Moments::of(int64_t n) const {
  if (n == 0) return {};
  const double mean = sum / double(n);
  if (n < 2) return {mean, 0};
  const double var = std::max(0.0, sum2 / double(n) - mean * mean);
  return {mean, std::sqrt(var / double(n - 1))};
}

void EvalStats::add(const TokenScore& s) {
  ++n_;
  nll_.add(s.nll);
  if (!with_base_) return;
  nll_base_.add(s.nll_base);
  kl_.add(s.kl);
  dp_.add(s.p_model - s.p_base);
  lnr_.add(s.nll - s.nll_base);
  agree_ += s.top1_agree;
  kls_.push_back(s.kl);
  dps_.push_back(s.p_model - s.p_base);
}

Estimate EvalStats::mean_nll() const { return nll_.of(n_); }

Estimate EvalStats::ppl() const {
  const Estimate m = nll_.of(n_);
  const double p = std::exp(m.value);
  return {p, p * m.se};
}

Estimate EvalStats::base_ppl() const {
  const Estimate m = nll_base_.of(n_);
  const double p = std::exp(m.value);
  return {p, p * m.se};
}

Estimate EvalStats::kl() const { return kl_.of(n_); }
Estimate EvalStats::delta_p() const { return dp_.of(n_); }
Estimate EvalStats::ln_ppl_ratio() const { return lnr_.of(n_); }

Estimate EvalStats::top1() const {
  if (n_ == 0) return {};
  const double p = double(agree_) / double(n_);
  return {p, n_ > 1 ? std::sqrt(p * (1 - p) / double(n_ - 1)) : 0.0};
}

double EvalStats::rms_delta_p() const { return n_ ? std::sqrt(dp_.sum2 / double(n_)) : 0.0; }
double EvalStats::kl_quantile(double q) const { return quantile(kls_, q); }
double EvalStats::delta_p_quantile(double q) const { return quantile(dps_, q); }

double EvalStats::running_value() const { return with_base_ ? kl().value : ppl().value; }

std::string EvalStats::running_text() const {
  if (with_base_) {
    const Estimate k = kl();
    return fmt::format("KL {:.4f} ± {:.4f}", k.value, k.se);
  }
  const Estimate p = ppl();
  return fmt::format("ppl {:.4f} ± {:.4f}", p.value, p.se);
}

}  // namespace hlwq
