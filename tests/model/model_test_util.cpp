#include <omp.h>
// Implementation of the model-test helpers (see model_test_util.h).
#include "model_test_util.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <gtest/gtest.h>

#include "core/error.h"
#include "io/safetensors.h"

namespace hlwq::test {

CpuTestCtx::CpuTestCtx(const CpuKernels& k, size_t floats)
    : scratch(omp_get_max_threads(), floats), ctx{k, scratch} {}

namespace fs = std::filesystem;

std::vector<float> golden_f32(const fs::path& file, const std::string& name) {
  SafetensorsFile f(file.string());
  return tensor_to_f32(f.view(name));
}

std::vector<int32_t> golden_tokens(const fs::path& file, const std::string& name) {
  SafetensorsFile f(file.string());
  TensorView t = f.view(name);
  HLWQ_CHECK(t.dtype == DType::I64, "{} in {}: expected I64 token ids, got {}", name, file.string(), t.desc());
  std::vector<int32_t> out(size_t(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = int32_t(t.as<int64_t>()[i]);
  return out;
}

LogitsDiff compare_logits(const std::vector<float>& got, const std::vector<float>& ref, int64_t V) {
  HLWQ_CHECK(got.size() == ref.size(), "logits sizes differ: {} vs {}", got.size(), ref.size());
  LogitsDiff d;
  for (size_t i = 0; i < got.size(); ++i) {
    d.max_abs_err = std::max(d.max_abs_err, double(std::fabs(got[i] - ref[i])));
    d.max_abs_ref = std::max(d.max_abs_ref, double(std::fabs(ref[i])));
  }
  std::vector<double> row_err(got.size() / size_t(V), 0.0);
  for (size_t r = 0; r < row_err.size(); ++r) {
    auto g = got.begin() + long(r * V), f = ref.begin() + long(r * V);
    for (int64_t i = 0; i < V; ++i) row_err[r] = std::max(row_err[r], double(std::fabs(g[i] - f[i])));
    d.argmax_mismatches += std::max_element(g, g + V) - g != std::max_element(f, f + V) - f;
    // log-softmax of both rows in double: KL = Σ p (log p − log q)
    auto log_z = [&](auto row) {
      const double m = *std::max_element(row, row + V);
      double z = 0;
      for (int64_t i = 0; i < V; ++i) z += std::exp(double(row[i]) - m);
      return m + std::log(z);
    };
    const double zf = log_z(f), zg = log_z(g);
    double kl = 0;
    for (int64_t i = 0; i < V; ++i) {
      const double lp = double(f[i]) - zf, lq = double(g[i]) - zg;
      kl += std::exp(lp) * (lp - lq);
    }
    d.max_kl = std::max(d.max_kl, kl);
  }
  if (!row_err.empty()) {
    const auto mid = row_err.begin() + std::ptrdiff_t(row_err.size() / 2);
    std::nth_element(row_err.begin(), mid, row_err.end());
    d.median_row_rel = *mid / std::max(d.max_abs_ref, 1e-30);
  }
  return d;
}

void write_edited_checkpoint(const fs::path& src, const fs::path& dst, const std::function<bool(EditedTensor&)>& edit,
                             const std::vector<EditedTensor>& extra) {
  Checkpoint ck(src.string());
  std::vector<EditedTensor> ts;
  for (const auto& n : ck.names()) {
    TensorView v = ck.view(n);
    EditedTensor t{{n, v.dtype, v.shape}, {}};
    t.bytes.assign(static_cast<const uint8_t*>(v.data), static_cast<const uint8_t*>(v.data) + v.nbytes());
    if (edit(t)) ts.push_back(std::move(t));
  }
  for (const auto& e : extra) ts.push_back(e);
  fs::create_directories(dst);
  fs::copy_file(src / "config.json", dst / "config.json", fs::copy_options::overwrite_existing);
  std::vector<TensorSpec> specs;
  for (const auto& t : ts) specs.push_back(t.spec);
  CheckpointWriter w(dst, specs, uint64_t(1) << 30);
  for (const auto& t : ts) w.write(t.spec.name, t.bytes.data(), t.bytes.size());
  w.finish();
}

double check_hidden_golden(Model& m, const std::filesystem::path& golden, double tol) {
  const auto tokens = golden_tokens(golden, "tokens_a");
  const int L = int(m.config().n_layers);
  std::map<int, std::vector<float>> got;
  Sequence st = m.new_sequence(int64_t(tokens.size()));
  ForwardOptions opt;
  bool one_batch = true;
  opt.hidden_hook = [&](int slot, int64_t row0, const float* h, int64_t n) {
    one_batch = one_batch && row0 == 0;  // the golden window runs as one batch
    got[slot].assign(h, h + n * m.config().hidden_size);
  };
  m.forward(tokens.data(), int64_t(tokens.size()), st, nullptr, opt);
  EXPECT_TRUE(one_batch) << golden.filename() << ": the window ran as several batches";
  double worst = 0;
  for (int i = 0; i <= L; ++i) {
    const auto ref = golden_f32(golden, "hidden_a." + std::to_string(i));
    const auto& h = got.at(hf_hidden_state_slot(i, L));
    if (h.size() != ref.size()) {
      ADD_FAILURE() << "hidden_a." << i << ": " << h.size() << " values, golden has " << ref.size();
      return INFINITY;
    }
    double err = 0, mag = 0;
    for (size_t j = 0; j < h.size(); ++j) {
      err = std::max(err, double(std::fabs(h[j] - ref[j])));
      mag = std::max(mag, double(std::fabs(ref[j])));
    }
    worst = std::max(worst, err / mag);
    EXPECT_LE(err, tol * mag) << golden.filename() << " hidden_a." << i << ": max abs err " << err << " vs max |h| "
                              << mag;
    ::testing::Test::RecordProperty("hidden_a." + std::to_string(i) + "_rel_err", std::to_string(err / mag));
  }
  return worst;
}

}  // namespace hlwq::test
