// Lloyd-Max scalar quantizers for N(0, 1) (SPEC §4) and their exact MSE. A table is the ascending list of
// 2^bits centroids; its cells are bounded by the midpoints of neighbouring centroids (outer bounds ±∞), i.e.
// nearest-centroid quantization. Converged tables are computed in double precision on first use and cached as
// immutable function-local statics (no mutable global state); the seed's unconverged 5-bit table is a constant
// because its Q5 checkpoints can only be read with it.
#pragma once
#include <array>
#include <span>
#include <vector>

namespace hlwq {

inline constexpr int kLloydMaxMinBits = 2;
inline constexpr int kLloydMaxMaxBits = 8;

// Positive half of the seed's 5-bit table (100 Lloyd iterations from a uniform [−4, 4] start; MSE 0.002923).
inline constexpr std::array<float, 16> kSeedQ5PositiveHalf = {
    0.087992f, 0.264068f, 0.440432f, 0.617322f, 0.795051f, 0.974056f, 1.154962f, 1.338679f,
    1.526562f, 1.720652f, 1.924106f, 2.141992f, 2.382909f, 2.662872f, 3.016919f, 3.551609f};

// Converged MSE-optimal table for N(0, 1), 2^bits ascending centroids, double precision; bits in [2, 8].
std::vector<double> lloyd_max_compute(int bits);
// Same, rounded to float and cached; the reference stays valid for the life of the program.
const std::vector<float>& lloyd_max_table(int bits);
// The seed's 5-bit table, 32 ascending centroids (mirror of kSeedQ5PositiveHalf).
const std::vector<float>& seed_q5_table();
// Best uniform grid for N(0, 1): 2^bits centroids (i − (2^bits − 1)/2)·Δ with the MSE-minimizing step Δ.
std::vector<float> gaussian_uniform_table(int bits);

// E[(X − Q(X))²] for X ~ N(0, 1), Q = nearest centroid of `table` (ascending), in closed form (no sampling).
double gaussian_quant_mse(std::span<const double> table);
double gaussian_quant_mse(std::span<const float> table);

}  // namespace hlwq
