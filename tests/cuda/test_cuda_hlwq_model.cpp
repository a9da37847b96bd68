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

fs::path demo() { return test::source_dir() / "models" / "tiny-moe-dev"; }

// The demo model at 4 bits, quantized once per process.
const fs::path& hlwq4() {
  static const fs::path dir = [] {
    const fs::path d = test::scratch_dir("cuda-hlwq4") / "ckpt";
    QuantizeOptions o;
    o.src = demo().string();
    o.dst = d.string();
    o.format = QuantFormat::hlwq;
    o.hlwq_bits = 4;
    o.progress = false;
    o.force = true;
    quantize_model(o);
    return d;
  }();
  return dir;
}

Model load(const fs::path& dir, Device d, int slots = 0) {
  LoadOptions lo;
  lo.device = d;
  lo.kv_tokens = 1024;
  lo.moe_expert_cache_size = slots;
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

// Greedy decoding with teacher forcing (both engines continue with the CPU's choice), as test_cuda_model.cpp's
// GreedyGenerationEqualsCpu: flips only at near-ties, at most one step in 20.
TEST(CudaHlwqModel, GreedyDecodeMatchesCpu) {
  HLWQ_REQUIRE_CUDA();
  Model gpu = load(hlwq4(), Device::cuda), cpu = load(hlwq4(), Device::cpu);
  const int64_t V = gpu.config().vocab_size;
  const Tokenizer tok = Tokenizer::from_file(demo() / "tokenizer.json");
  int flips = 0, steps = 0;
  for (const char* prompt : {"The Python interpreter", "def fibonacci(n):", "In 1998, the city council"}) {
    const std::vector<int32_t> ids = tok.encode(prompt);
    Sequence sg = gpu.new_sequence(256), sc = cpu.new_sequence(256);
    std::vector<float> lg(static_cast<size_t>(V)), lc(static_cast<size_t>(V));
    gpu.forward(ids.data(), int64_t(ids.size()), sg, lg.data());
    cpu.forward(ids.data(), int64_t(ids.size()), sc, lc.data());
    for (int i = 0; i < kGreedySteps; ++i, ++steps) {
      const auto d = test::compare_logits(lg, lc, V);
      EXPECT_LE(d.max_abs_err, kHlwqCudaLogitsRelTol * d.max_abs_ref) << prompt << " step " << i;
      const int32_t c = int32_t(std::max_element(lc.begin(), lc.end()) - lc.begin());
      const int32_t g = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
      if (g != c) {
        ++flips;
        std::vector<float> top(lc);
        std::nth_element(top.begin(), top.begin() + 1, top.end(), std::greater<float>());
        const double margin = double(top[0] - top[1]);
        std::printf("[ greedy   ] '%s' step %d: cuda %d, cpu %d, cpu top-2 margin %.3g (max |logit| %.3g)\n", prompt,
                    i, g, c, margin, d.max_abs_ref);
        EXPECT_LE(margin, kHlwqCudaLogitsRelTol * d.max_abs_ref) << "a flip that is not a near-tie";
      }
      gpu.forward(&c, 1, sg, lg.data());
      cpu.forward(&c, 1, sc, lc.data());
    }
  }
  std::printf("[ greedy   ] hlwq-4 demo: %d flips at near-ties in %d steps\n", flips, steps);
  EXPECT_LE(flips, steps / 20);
}

// The expert cache reads the same packed HLWQ bytes from a slot or in place from host memory: bit-identical.
TEST(CudaHlwqModel, ExpertCacheGivesBitIdenticalLogits) {
  HLWQ_REQUIRE_CUDA();
  auto run = [&](int slots) {
    Model m = load(hlwq4(), Device::cuda, slots);
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
  const auto ref = run(0);
  for (int n : {1, 3, 16}) EXPECT_EQ(run(n), ref) << n << " slots";
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
