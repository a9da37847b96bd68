// A native HLWQ checkpoint on the CUDA backend: the demo model quantized by `hlwq quantize --format hlwq --bits 4`
// (every linear but the router gates, in_proj_a/b and lm_head is HLWQ, the experts too) against the CPU engine on
// the same checkpoint (prefill logits, greedy decode with flips counted at near-ties), the expert cache at several
// sizes (bit-identical to all resident), and a negative case (the codes with their order flipped within each byte
// must move the logits far outside the tolerance). Skips loudly without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "../model/model_test_util.h"
#include "cuda_test_util.h"
#include "demo_checkpoints.h"
#include "model/model.h"
#include "quant/quantize_model.h"
#include "runtime/tokenizer.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

// As test_cuda_model.cpp's kCudaTrainedLogitsRelTol (the demo model's sharp attention with a bf16 KV cache and
// bf16 GEMM inputs: 1.2e-1 of max |logit|); the HLWQ kernels add one rounding of the same size (codebook values
// in bf16, error_budgets.h kHlwqGemmRel), which stays inside that budget's margin.
constexpr double kHlwqCudaLogitsRelTol = 1.2e-1;
constexpr int kGreedySteps = 48;

fs::path demo() { return test::demo_model(); }
using test::quantize_demo;
const fs::path& hlwq4() { return test::demo_hlwq4(); }

Model load(const fs::path& dir, Device d, int slots = 0, int64_t stream_min_tokens = kDefaultStreamMinTokens) {
  LoadOptions lo;
  lo.device = d;
  lo.kv_tokens = 1024;
  lo.moe_expert_cache_size = slots;
  lo.moe_stream_min_tokens = stream_min_tokens;
  return Model::load(dir, lo);
}

std::vector<float> prefill_logits(Model& m, const std::vector<int32_t>& ids) {
  Sequence s = m.new_sequence(int64_t(ids.size()));
  std::vector<float> l(ids.size() * size_t(m.config().vocab_size));
  m.forward(ids.data(), int64_t(ids.size()), s, l.data(), forward_all_logits());
  return l;
}

std::vector<int32_t> test_prompt(int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + 13) % 8000 + 50);
  return t;
}

TEST(CudaHlwqModel, PrefillLogitsMatchCpu) {
  HLWQ_REQUIRE_CUDA();
  Model gpu = load(hlwq4(), Device::cuda), cpu = load(hlwq4(), Device::cpu);
  for (int64_t n : {1, 7, 40}) {  // decode-sized, an 8-token tile, and 16-token prefill tiles
    const auto ids = test_prompt(n);
    const auto d = test::compare_logits(prefill_logits(gpu, ids), prefill_logits(cpu, ids), gpu.config().vocab_size);
    std::printf("[ err      ] hlwq-4 demo, %lld tokens: max |err| / max |logit| = %.3g (tolerance %.3g), %lld "
                "argmax flips\n", (long long)n, d.max_abs_err / d.max_abs_ref, kHlwqCudaLogitsRelTol,
                (long long)d.argmax_mismatches);
    EXPECT_LE(d.max_abs_err, kHlwqCudaLogitsRelTol * d.max_abs_ref) << n << " tokens";
    EXPECT_LE(d.argmax_mismatches, std::max<int64_t>(1, n / 20)) << n << " tokens";
  }
}

// Teacher-forced greedy decoding (both engines continue with the CPU's choice, so one near-tie flip does not derail
// the comparison): each step's max |err| / max |logit| and the flips, with the CPU's top-2 margin at each flip.
struct Drift {
  std::vector<double> rel;  // per step
  std::vector<double> kl;   // per step, KL(cpu ‖ gpu) in nats
  std::vector<double> flip_margins;  // CPU top-2 margin / max |logit| at each flip
  static double quantile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, size_t(q * double(v.size())))];
  }
};

Drift teacher_forced(const fs::path& dir) {
  Model gpu = load(dir, Device::cuda), cpu = load(dir, Device::cpu);
  const int64_t V = gpu.config().vocab_size;
  const Tokenizer tok = Tokenizer::from_file(demo() / "tokenizer.json");
  Drift d;
  for (const char* prompt : {"The Python interpreter", "def fibonacci(n):", "In 1998, the city council"}) {
    const std::vector<int32_t> ids = tok.encode(prompt);
    Sequence sg = gpu.new_sequence(256), sc = cpu.new_sequence(256);
    std::vector<float> lg(static_cast<size_t>(V)), lc(static_cast<size_t>(V));
    gpu.forward(ids.data(), int64_t(ids.size()), sg, lg.data());
    cpu.forward(ids.data(), int64_t(ids.size()), sc, lc.data());
    for (int i = 0; i < kGreedySteps; ++i) {
      const auto e = test::compare_logits(lg, lc, V);
      d.rel.push_back(e.max_abs_err / e.max_abs_ref);
      d.kl.push_back(e.max_kl);
      const int32_t c = int32_t(std::max_element(lc.begin(), lc.end()) - lc.begin());
      const int32_t g = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
      if (g != c) {
        std::vector<float> top(lc);
        std::nth_element(top.begin(), top.begin() + 1, top.end(), std::greater<float>());
        d.flip_margins.push_back(double(top[0] - top[1]) / e.max_abs_ref);
      }
      gpu.forward(&c, 1, sg, lg.data());
      cpu.forward(&c, 1, sc, lc.data());
    }
  }
  return d;
}

void print_drift(const char* what, const Drift& d) {
  using Q = Drift;
  std::printf("[ drift    ] %-12s per-step max |err| / max |logit|: median %.3g, 95%% %.3g, max %.3g; KL median %.2e, "
              "95%% %.2e, max %.2e; %zu flips in %zu steps\n", what, Q::quantile(d.rel, 0.5), Q::quantile(d.rel, 0.95),
              Q::quantile(d.rel, 1.0), Q::quantile(d.kl, 0.5), Q::quantile(d.kl, 0.95), Q::quantile(d.kl, 1.0),
              d.flip_margins.size(), d.rel.size());
}

// The demo model at 4 bits as CT INT4 (mse scales): the same rounding path on the GPU but for the dequantization.
const fs::path& int4() {
  static const fs::path dir = quantize_demo("cuda-int4-mse", [](QuantizeOptions& o) {
    o.format = QuantFormat::ct_int4;
    o.method = Int4Method::mse;
  });
  return dir;
}

// Teacher-forced decode bounds, per step against the CPU engine. The typical step (median, 95th percentile) is held
// to the budgets of the random fixtures, which a systematic error (a wrong rounding, a lost rotation, a wrong code)
// exceeds everywhere; single steps may go higher where the trained model amplifies the GPU's bf16 roundings (its
// GDN layer after the first attention layer multiplies a 5e-4 difference ~50×: test_cuda_cpu_experts.cpp). Measured
// on the H200 (2026-11-30, 144 steps): hlwq-4 median 0.0044, 95 % 0.015, max 0.197 (2 steps above 0.12); bf16 and
// INT4 of the same model: 95 % 0.041 / 0.032, max 0.103 / 0.105. The flipped code order gives 1.25 at every step.
constexpr double kDriftMedianTol = 2e-2;
constexpr double kDriftP95Tol = 6e-2;
constexpr double kDriftMaxTol = 2.5e-1;
constexpr double kDriftKlP95Tol = 1e-2;  // nats; the 4-bit quantization itself costs ~0.19 (QUALITY.md)

TEST(CudaHlwqModel, GreedyDecodeMatchesCpu) {
  HLWQ_REQUIRE_CUDA();
  const Drift h = teacher_forced(hlwq4());
  print_drift("hlwq-4", h);
  // the same measurement for the bf16 and INT4 versions of the model, for scale (not asserted here: CudaModel's
  // tests own them)
  print_drift("bf16", teacher_forced(demo()));
  print_drift("ct-int4 mse", teacher_forced(int4()));
  EXPECT_LE(Drift::quantile(h.rel, 0.5), kDriftMedianTol);
  EXPECT_LE(Drift::quantile(h.rel, 0.95), kDriftP95Tol);
  EXPECT_LE(Drift::quantile(h.rel, 1.0), kDriftMaxTol);
  EXPECT_LE(Drift::quantile(h.kl, 0.95), kDriftKlP95Tol);
  for (double m : h.flip_margins) EXPECT_LE(m, kHlwqCudaLogitsRelTol) << "a flip that is not a near-tie";
  EXPECT_LE(h.flip_margins.size(), h.rel.size() / 20);
}

// The expert cache reads the same packed HLWQ bytes from a slot or in place from host memory: bit-identical.
TEST(CudaHlwqModel, ExpertCacheGivesBitIdenticalLogits) {
  HLWQ_REQUIRE_CUDA();
  auto run = [&](int slots, int64_t stream_min_tokens) {
    Model m = load(hlwq4(), Device::cuda, slots, stream_min_tokens);
    const auto ids = test_prompt(24);
    const int64_t V = m.config().vocab_size;
    Sequence s = m.new_sequence(64);
    std::vector<float> row(static_cast<size_t>(V)), all;
    m.forward(ids.data(), int64_t(ids.size()), s, row.data());
    for (int i = 0; i < 12; ++i) {
      all.insert(all.end(), row.begin(), row.end());
      const int32_t next = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
      m.forward(&next, 1, s, row.data());
    }
    return all;
  };
  const auto ref = run(0, kDefaultStreamMinTokens);
  for (int n : {1, 3, 16}) EXPECT_EQ(run(n, kDefaultStreamMinTokens), ref) << n << " slots";
  // the prefill streamed through the staging buffers (moe_stream.cuh): the HLWQ MLP in rounds of tile ranges
  for (int n : {1, 3}) EXPECT_EQ(run(n, 1), ref) << n << " slots, the prefill streamed";
}

// `quantize --ignore '.*\.linear_attn\.'`: the Gated DeltaNet projections stay bf16 beside INT4 / HLWQ-4 experts
// and attention; the GPU packs them as bf16 matrices ([in_proj_qkv; in_proj_z] fused, out_proj alone) and must
// agree with the CPU engine as closely as on the fully quantized checkpoints. These checkpoints route some tokens
// of the 40-token prompt at near-ties: the CPU engine itself, with and without the GPU's bf16 rounding of GEMM
// inputs, differs by up to 0.235 of max |logit| at single rows (rows 6, 18 and 19 of the HLWQ one), and a change of
// the prefill attention kernel that moved its outputs by 3e-6 moved the GPU's row 7 from 0.004 to 0.15–0.235
// (2026-12-02). So each prompt's rows are held as a teacher-forced decode's steps are (kDrift*, above): the median
// row to its median bound (a wrong op moves every row; measured ≤ 0.0045 on the H200) and every row to its max.
TEST(CudaHlwqModel, Bf16MixersBesideQuantizedLinearsMatchCpu) {
  HLWQ_REQUIRE_CUDA();
  for (const QuantFormat f : {QuantFormat::ct_int4, QuantFormat::hlwq}) {
    const std::string name = f == QuantFormat::hlwq ? "cuda-hlwq4-gdn-bf16" : "cuda-int4-gdn-bf16";
    SCOPED_TRACE(name);
    const fs::path dir = quantize_demo(name.c_str(), [f](QuantizeOptions& o) {
      o.format = f;
      o.method = Int4Method::mse;
      o.plan.ignore = {".*\\.linear_attn\\."};
    });
    Model gpu = load(dir, Device::cuda), cpu = load(dir, Device::cpu);
    for (int64_t n : {1, 7, 40}) {
      const auto ids = test_prompt(n);
      const auto got = prefill_logits(gpu, ids), ref = prefill_logits(cpu, ids);
      const int64_t V = gpu.config().vocab_size;
      const auto d = test::compare_logits(got, ref, V);
      const double median = d.median_row_rel;
      std::printf("[ err      ] %s, %lld tokens: max |err| / max |logit| = %.3g (tolerance %.3g), median row %.3g "
                  "(tolerance %.3g), %lld argmax flips\n", name.c_str(), (long long)n, d.max_abs_err / d.max_abs_ref,
                  kDriftMaxTol, median, kDriftMedianTol, (long long)d.argmax_mismatches);
      EXPECT_LE(median, kDriftMedianTol) << n << " tokens";
      EXPECT_LE(d.max_abs_err, kDriftMaxTol * d.max_abs_ref) << n << " tokens";
      EXPECT_LE(d.argmax_mismatches, std::max<int64_t>(1, n / 20)) << n << " tokens";
    }
    const Drift dr = teacher_forced(dir);
    print_drift(name.c_str(), dr);
    EXPECT_LE(Drift::quantile(dr.rel, 0.5), kDriftMedianTol);
    EXPECT_LE(Drift::quantile(dr.rel, 0.95), kDriftP95Tol);
    EXPECT_LE(Drift::quantile(dr.kl, 0.95), kDriftKlP95Tol);
  }
}

// Negative case: the same code bytes with the order of the two 4-bit codes in each byte flipped are a different
// model; the GPU must not agree with the CPU on the original.
TEST(CudaHlwqModel, FlippedCodeOrderFails) {
  HLWQ_REQUIRE_CUDA();
  const fs::path dir = test::scratch_dir("cuda-hlwq4-flipped") / "ckpt";
  int edited = 0;
  test::write_edited_checkpoint(hlwq4(), dir, [&](test::EditedTensor& t) {
    if (!t.spec.name.ends_with(".hlwq_codes")) return true;
    for (uint8_t& b : t.bytes) b = uint8_t((b << 4) | (b >> 4));
    ++edited;
    return true;
  });
  ASSERT_GT(edited, 0);
  Model gpu = load(dir, Device::cuda), cpu = load(hlwq4(), Device::cpu);
  const auto ids = test_prompt(16);
  const auto d = test::compare_logits(prefill_logits(gpu, ids), prefill_logits(cpu, ids), gpu.config().vocab_size);
  std::printf("[ err      ] flipped code order: max |err| / max |logit| = %.3g, %lld argmax flips\n",
              d.max_abs_err / d.max_abs_ref, (long long)d.argmax_mismatches);
  EXPECT_FALSE(d.within(kHlwqCudaLogitsRelTol)) << "flipped codes went unnoticed";
}

}  // namespace
}  // namespace hlwq
