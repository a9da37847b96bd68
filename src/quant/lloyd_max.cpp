// Lloyd-Max for N(0, 1) in double precision. Cell [a, b] has mass P = Φ(b) − Φ(a), first moment φ(a) − φ(b) and
// second moment P + aφ(a) − bφ(b), so centroids and MSE are closed forms. Tails use the complementary function
// Q(x) = ½·erfc(x/√2) on the side away from zero so that tiny outer cells keep full relative precision.
// Start: companding quantiles (high-resolution optimum, point density ∝ φ^{1/3} = quantiles of N(0, 3)); then
// solve the Lloyd fixed point (every boundary = midpoint of its two centroids) to kTol with Newton steps on the
// tridiagonal Jacobian, falling back to a plain Lloyd step when Newton does not reduce the residual.
#include "quant/lloyd_max.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace hlwq {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTol = 1e-13;           // max boundary change at convergence (tables are stored as float)
constexpr int kMaxIters = 100'000;       // safety net; Newton converges in < 20 steps

double pdf(double x) { return std::isinf(x) ? 0.0 : std::exp(-0.5 * x * x) * 0.39894228040143267794; }
double upper_tail(double x) { return 0.5 * std::erfc(x * 0.70710678118654752440); }  // Q(x) = 1 − Φ(x)

// Φ(b) − Φ(a) for a < b, without cancellation in either tail.
double cell_mass(double a, double b) {
  if (a >= 0) return upper_tail(a) - upper_tail(b);
  if (b <= 0) return upper_tail(-b) - upper_tail(-a);
  return 1.0 - upper_tail(b) - upper_tail(-a);
}

double xpdf(double x) { return std::isinf(x) ? 0.0 : x * pdf(x); }

// Standard normal quantile by bisection (only used for the start, n calls).
double normal_quantile(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = 0.5 * (lo + hi);
    (1.0 - upper_tail(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

void centroids_from_bounds(const std::vector<double>& bnd, std::vector<double>& c) {
  for (size_t i = 0; i + 1 < bnd.size(); ++i) {
    const double a = bnd[i], b = bnd[i + 1];
    c[i] = (pdf(a) - pdf(b)) / std::max(cell_mass(a, b), 1e-300);
  }
}

// res[i] = bnd[i] − (c[i−1] + c[i])/2 for interior boundaries (zero at the Lloyd fixed point); returns max |res|.
double lloyd_residual(const std::vector<double>& bnd, const std::vector<double>& c, std::vector<double>& res) {
  double m = 0;
  for (size_t i = 1; i + 1 < bnd.size(); ++i) {
    res[i] = bnd[i] - 0.5 * (c[i - 1] + c[i]);
    m = std::max(m, std::fabs(res[i]));
  }
  return m;
}

// ∂c/∂a and ∂c/∂b of the centroid c of cell [a, b]: φ(a)(c − a)/P and φ(b)(b − c)/P (zero at ±∞).
double dcent_dlower(double a, double b, double c) {
  return std::isinf(a) ? 0.0 : pdf(a) * (c - a) / std::max(cell_mass(a, b), 1e-300);
}
double dcent_dupper(double a, double b, double c) {
  return std::isinf(b) ? 0.0 : pdf(b) * (b - c) / std::max(cell_mass(a, b), 1e-300);
}

// trial = bnd − J⁻¹ res, J the tridiagonal Jacobian of the residual (Thomas algorithm).
void newton_step(const std::vector<double>& bnd, const std::vector<double>& c, const std::vector<double>& res,
                 std::vector<double>& trial) {
  const size_t n = c.size();  // interior unknowns 1 .. n−1
  std::vector<double> lo(n), di(n), up(n), rhs(n);
  for (size_t i = 1; i < n; ++i) {
    lo[i] = -0.5 * dcent_dlower(bnd[i - 1], bnd[i], c[i - 1]);
    di[i] = 1.0 - 0.5 * (dcent_dupper(bnd[i - 1], bnd[i], c[i - 1]) + dcent_dlower(bnd[i], bnd[i + 1], c[i]));
    up[i] = -0.5 * dcent_dupper(bnd[i], bnd[i + 1], c[i]);
    rhs[i] = res[i];
  }
  for (size_t i = 2; i < n; ++i) {
    const double f = lo[i] / di[i - 1];
    di[i] -= f * up[i - 1];
    rhs[i] -= f * rhs[i - 1];
  }
  trial = bnd;
  double next = 0;
  for (size_t i = n - 1; i >= 1; --i) {
    next = (rhs[i] - (i + 1 < n ? up[i] * next : 0.0)) / di[i];
    trial[i] = bnd[i] - next;
  }
}

template <typename T>
double mse_impl(std::span<const T> table) {
  HLWQ_CHECK(!table.empty(), "gaussian_quant_mse: empty table");
  double mse = 0;
  const size_t n = table.size();
  for (size_t i = 0; i < n; ++i) {
    HLWQ_CHECK(i == 0 || table[i - 1] < table[i], "gaussian_quant_mse: table not strictly ascending at {}", i);
    const double c = table[i];
    const double a = i == 0 ? -kInf : 0.5 * (double(table[i - 1]) + c);
    const double b = i + 1 == n ? kInf : 0.5 * (c + double(table[i + 1]));
    const double p = cell_mass(a, b), m1 = pdf(a) - pdf(b), m2 = p + xpdf(a) - xpdf(b);
    mse += m2 - 2 * c * m1 + c * c * p;
  }
  return mse;
}

template <int B>
const std::vector<float>& cached_table() {
  static const std::vector<float> t = [] {
    const std::vector<double> d = lloyd_max_compute(B);
    return std::vector<float>(d.begin(), d.end());
  }();
  return t;
}

}  // namespace

std::vector<double> lloyd_max_compute(int bits) {
  HLWQ_CHECK(bits >= kLloydMaxMinBits && bits <= kLloydMaxMaxBits, "lloyd_max: bits must be in [{}, {}], got {}",
             kLloydMaxMinBits, kLloydMaxMaxBits, bits);
  const size_t n = size_t(1) << bits;
  std::vector<double> bnd(n + 1), c(n), trial(n + 1), res(n + 1);
  bnd[0] = -kInf;
  bnd[n] = kInf;
  for (size_t i = 1; i < n; ++i) bnd[i] = std::sqrt(3.0) * normal_quantile(double(i) / double(n));
  centroids_from_bounds(bnd, c);
  double resid = lloyd_residual(bnd, c, res);
  int it = 0;
  for (; it < kMaxIters && resid > kTol; ++it) {
    // A Newton step converges in a handful of iterations; plain Lloyd (slow for many levels, since its
    // contraction factor tends to 1) is the fallback whenever Newton would not shrink the residual.
    newton_step(bnd, c, res, trial);
    if (std::is_sorted(trial.begin(), trial.end())) {
      centroids_from_bounds(trial, c);
      const double r = lloyd_residual(trial, c, res);
      if (r < resid) {
        bnd.swap(trial);
        resid = r;
        continue;
      }
    }
    centroids_from_bounds(bnd, c);
    for (size_t i = 1; i < n; ++i) bnd[i] = 0.5 * (c[i - 1] + c[i]);
    centroids_from_bounds(bnd, c);
    resid = lloyd_residual(bnd, c, res);
  }
  HLWQ_CHECK(it < kMaxIters, "lloyd_max: {} bits did not converge in {} iterations", bits, kMaxIters);
  return c;
}

const std::vector<float>& lloyd_max_table(int bits) {
  switch (bits) {
    case 2: return cached_table<2>();
    case 3: return cached_table<3>();
    case 4: return cached_table<4>();
    case 5: return cached_table<5>();
    case 6: return cached_table<6>();
    case 7: return cached_table<7>();
    case 8: return cached_table<8>();
    default: fail("lloyd_max_table: bits must be in [{}, {}], got {}", kLloydMaxMinBits, kLloydMaxMaxBits, bits);
  }
}

const std::vector<float>& seed_q5_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v;
    for (auto it = kSeedQ5PositiveHalf.rbegin(); it != kSeedQ5PositiveHalf.rend(); ++it) v.push_back(-*it);
    v.insert(v.end(), kSeedQ5PositiveHalf.begin(), kSeedQ5PositiveHalf.end());
    return v;
  }();
  return t;
}

std::vector<float> gaussian_uniform_table(int bits) {
  HLWQ_CHECK(bits >= 1 && bits <= kLloydMaxMaxBits, "gaussian_uniform_table: bits must be in [1, {}], got {}",
             kLloydMaxMaxBits, bits);
  const size_t n = size_t(1) << bits;
  std::vector<double> t(n);
  auto mse_at = [&](double step) {
    for (size_t i = 0; i < n; ++i) t[i] = (double(i) - 0.5 * double(n - 1)) * step;
    return gaussian_quant_mse(std::span<const double>(t));
  };
  // MSE(Δ) is unimodal: golden-section search on a bracket that holds the optimum for 1..8 bits.
  const double g = 0.5 * (std::sqrt(5.0) - 1);
  double lo = 1e-3, hi = 2.0;
  double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo), f1 = mse_at(x1), f2 = mse_at(x2);
  while (hi - lo > 1e-12) {
    if (f1 < f2) {
      hi = x2, x2 = x1, f2 = f1, x1 = hi - g * (hi - lo), f1 = mse_at(x1);
    } else {
      lo = x1, x1 = x2, f1 = f2, x2 = lo + g * (hi - lo), f2 = mse_at(x2);
    }
  }
  mse_at(0.5 * (lo + hi));
  return std::vector<float>(t.begin(), t.end());
}

double gaussian_quant_mse(std::span<const double> table) { return mse_impl(table); }
double gaussian_quant_mse(std::span<const float> table) { return mse_impl(table); }

}  // namespace hlwq
