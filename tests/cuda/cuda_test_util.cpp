// Helpers of the CUDA differential tests (see cuda_test_util.h).
#include "cuda_test_util.h"

#include <cmath>

#include "core/dtype.h"

namespace hlwq::test {

std::unique_ptr<OwnedLinear> random_int4(const std::string& name, int64_t out, int64_t in, float scale_mag,
                                         std::mt19937_64& rng) {
  auto o = std::make_unique<OwnedLinear>();
  o->packed.resize(size_t(out * in / 8));
  for (auto& w : o->packed) w = uint32_t(rng());
  std::uniform_real_distribution<float> sd(0.25f * scale_mag / 8, scale_mag / 8);
  o->scale.resize(size_t(out * in / 128));
  for (auto& s : o->scale) s = f32_to_bf16(sd(rng));
  o->w.name = name;
  o->w.format = LinearFormat::u4b8_g128;
  o->w.out = out;
  o->w.in = in;
  o->w.packed = TensorView{DType::I32, {out, in / 8}, o->packed.data()};
  o->w.scale = TensorView{DType::BF16, {out, in / 128}, o->scale.data()};
  return o;
}

std::unique_ptr<OwnedLinear> random_bf16(const std::string& name, int64_t out, int64_t in, float mag,
                                         std::mt19937_64& rng) {
  auto o = std::make_unique<OwnedLinear>();
  std::uniform_real_distribution<float> d(-mag, mag);
  o->dense.resize(size_t(out * in));
  for (auto& v : o->dense) v = f32_to_bf16(d(rng));
  o->w.name = name;
  o->w.format = LinearFormat::dense;
  o->w.out = out;
  o->w.in = in;
  o->w.weight = TensorView{DType::BF16, {out, in}, o->dense.data()};
  return o;
}

std::vector<float> random_bf16_exact(size_t n, float mag, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> d(-mag, mag);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(d(rng)));
  return v;
}

std::vector<float> random_f32(size_t n, float lo, float hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double e = 0, r = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(ref[i])) return INFINITY;
    e += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    r += double(ref[i]) * ref[i];
  }
  return std::sqrt(e / std::max(r, 1e-300));
}

}  // namespace hlwq::test
