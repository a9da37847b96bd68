// The engine on HLWQ checkpoints: native HLWQ (3, 4, 5 bits) and the seed's hlwq-q5 run through the fused
// kernels (rotated-activation GEMV for decode, weight-domain row decode for prefill) and must give the logits
// the engine's dense path gives on the same codes decoded to fp32 (write_hlwq_decoded), with the scalar and the
// AVX2 kernel sets, also with mixed widths (overrides); a codes tensor of the wrong shape, or of a width other
// than its module resolves to, is refused naming it; a flipped code order changes the
// logits (negative control).
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model.h"
#include "model_test_util.h"
#include "quant/hlwq_checkpoint.h"
#include "quant/hlwq_pack.h"
#include "quant/lloyd_max.h"
#include "quant/quantize_model.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

// Linears with ≤ 3 tokens (decode, and the MoE experts that few prefill tokens pick) sum in the rotated domain,
// the others multiply bit-identical decoded weights: fp32 summation order only. The goldens' bound; measured
// 2e-5 … 5e-5 of max |logit|.
constexpr double kPrefillRelTol = 1e-4;
constexpr double kDecodeRelTol = 1e-4;

fs::path demo() { return test::source_dir() / "models" / "tiny-moe-dev"; }

void quantize(const fs::path& dst, QuantFormat f, int bits) {
  QuantizeOptions o;
  o.src = demo().string();
  o.dst = dst.string();
  o.format = f;
  o.hlwq_bits = bits;
  o.progress = false;
  quantize_model(o);
}

std::vector<int32_t> prompt(int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + 13) % 8000 + 50);
  return t;
}

// logits [n, V] of a prefill of `ids`, then [V] for each of `steps` one-token decode steps (greedy ids fixed
// by the caller so both models see the same tokens)
struct ModelRun {
  std::vector<float> prefill, decode;
};
ModelRun run_model(const fs::path& dir, CpuIsa isa, const std::vector<int32_t>& ids, const std::vector<int32_t>& steps) {
  LoadOptions lo;
  lo.isa = isa;
  Model m = Model::load(dir.string(), lo);
  const int64_t V = m.config().vocab_size;
  Sequence s = m.new_sequence(int64_t(ids.size() + steps.size()));
  ModelRun r;
  r.prefill.resize(ids.size() * size_t(V));
  m.forward(ids.data(), int64_t(ids.size()), s, r.prefill.data(), forward_all_logits());
  std::vector<float> l(static_cast<size_t>(V));
  for (const int32_t t : steps) {
    m.forward(&t, 1, s, l.data());
    r.decode.insert(r.decode.end(), l.begin(), l.end());
  }
  return r;
}

void expect_same_as_decoded(const fs::path& q, const fs::path& dec, const std::string& what) {
  const std::vector<int32_t> ids = prompt(40), steps = {101, 2024, 7};
  for (const CpuIsa isa : {CpuIsa::scalar, CpuIsa::auto_detect}) {
    const ModelRun a = run_model(q, isa, ids, steps), b = run_model(dec, isa, ids, steps);
    const int64_t V = int64_t(a.decode.size() / steps.size());
    const test::LogitsDiff p = test::compare_logits(a.prefill, b.prefill, V);
    const test::LogitsDiff d = test::compare_logits(a.decode, b.decode, V);
    EXPECT_TRUE(p.within(kPrefillRelTol)) << what << " isa " << int(isa) << ": prefill max err " << p.max_abs_err
                                          << " of " << p.max_abs_ref << ", argmax mismatches " << p.argmax_mismatches;
    EXPECT_TRUE(d.within(kDecodeRelTol)) << what << " isa " << int(isa) << ": decode max err " << d.max_abs_err
                                         << " of " << d.max_abs_ref << ", argmax mismatches " << d.argmax_mismatches;
  }
}

TEST(HlwqModel, NativeRunsLikeItsDecodedWeights) {
  for (const int bits : {3, 4, 5}) {
    const fs::path root = test::scratch_dir("hlwq-model-" + std::to_string(bits));
    quantize(root / "q", QuantFormat::hlwq, bits);
    write_hlwq_decoded((root / "q").string(), (root / "dec").string());
    ASSERT_EQ(Model::load((root / "q").string()).weights().layers[0].gdn.in_proj_qkv.format, LinearFormat::hlwq);
    expect_same_as_decoded(root / "q", root / "dec", "hlwq-" + std::to_string(bits));
  }
}

TEST(HlwqModel, MixedWidthsRunLikeTheirDecodedWeights) {
  const fs::path root = test::scratch_dir("hlwq-model-mixed");
  QuantizeOptions o;
  o.src = demo().string();
  o.dst = (root / "q").string();
  o.format = QuantFormat::hlwq;
  o.hlwq_bits = 4;
  o.hlwq_bits_for = {{".*\\.linear_attn\\.", 5}, {".*\\.mlp\\.shared_expert\\.", 3}};
  o.progress = false;
  quantize_model(o);
  write_hlwq_decoded((root / "q").string(), (root / "dec").string());
  const Model m = Model::load((root / "q").string());
  EXPECT_EQ(m.weights().layers[0].gdn.in_proj_qkv.hlwq.bits, 5);
  EXPECT_EQ(m.weights().layers[0].gdn.out_proj.hlwq.bits, 5);
  EXPECT_EQ(m.weights().layers[1].moe.experts[3].down_proj.hlwq.bits, 4);
  EXPECT_EQ(m.weights().layers[1].moe.shared.down_proj.hlwq.bits, 3);
  expect_same_as_decoded(root / "q", root / "dec", "hlwq-4 with gdn-5, shared-3");
}

// The config says the Gated DeltaNet projections are 5-bit, the file holds 4-bit codes: refused by name and width.
TEST(HlwqModel, CodesNarrowerThanTheirOverrideAreRefused) {
  const fs::path root = test::scratch_dir("hlwq-model-mixed-bad");
  quantize(root / "q", QuantFormat::hlwq, 4);
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(root / "q" / "config.json"));
  nlohmann::json& q = cfg["quantization_config"];
  nlohmann::json values = nlohmann::json::array();
  for (const float c : lloyd_max_table(5)) values.push_back(double(c));
  q["version"] = 2;
  q["overrides"] = {{{"targets", {"re:.*\\.linear_attn\\.in_proj_qkv$"}},
                     {"bits", 5},
                     {"codebook", {{"name", "lloyd-max-gaussian"}, {"values", values}}}}};
  std::ofstream(root / "q" / "config.json") << cfg.dump(2);
  try {
    Model::load((root / "q").string());
    FAIL() << "4-bit codes under a 5-bit override must be refused";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("model.layers.0.linear_attn.in_proj_qkv.hlwq_codes"), std::string::npos) << w;
    EXPECT_NE(w.find("5-bit codes"), std::string::npos) << w;
    EXPECT_NE(w.find("holds 4-bit codes"), std::string::npos) << w;
  }
}

TEST(HlwqModel, SeedQ5RunsDirectly) {
  const fs::path root = test::scratch_dir("hlwq-model-q5");
  quantize(root / "q5", QuantFormat::hlwq_q5, 5);
  write_hlwq_decoded((root / "q5").string(), (root / "dec").string());
  const Model m = Model::load((root / "q5").string());
  EXPECT_EQ(m.weights().layers[1].moe.experts[3].down_proj.format, LinearFormat::hlwq);
  EXPECT_EQ(m.weights().layers[1].moe.experts[3].down_proj.hlwq.order, HlwqBitOrder::msb_first);
  expect_same_as_decoded(root / "q5", root / "dec", "hlwq-q5");
}

TEST(HlwqModel, WrongCodesShapeIsRefusedByName) {
  const fs::path root = test::scratch_dir("hlwq-model-bad");
  quantize(root / "q", QuantFormat::hlwq, 4);
  const std::string name = "model.layers.2.self_attn.o_proj.hlwq_codes";
  test::write_edited_checkpoint(root / "q", root / "bad", [&](test::EditedTensor& t) {
    if (t.spec.name == name) {
      t.spec.shape = {t.spec.shape[0] / 2, t.spec.shape[1] * 2};  // same bytes, rows halved
    }
    return true;
  });
  try {
    Model::load((root / "bad").string());
    FAIL() << "a wrong codes shape must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected [256, 128] U8"), std::string::npos) << e.what();
  }
}

TEST(HlwqModel, FlippedCodeOrderChangesTheLogits) {
  const fs::path root = test::scratch_dir("hlwq-model-flip");
  quantize(root / "q", QuantFormat::hlwq, 4);
  test::write_edited_checkpoint(root / "q", root / "flip", [&](test::EditedTensor& t) {
    if (t.spec.name.find(".hlwq_codes") != std::string::npos) {
      const int64_t n = int64_t(t.bytes.size()) / 4 * 8;
      std::vector<uint8_t> codes(static_cast<size_t>(n));
      hlwq_unpack_codes(t.bytes.data(), n, 4, HlwqBitOrder::lsb_first, codes.data());
      hlwq_pack_codes(codes.data(), n, 4, HlwqBitOrder::msb_first, t.bytes.data());
    }
    return true;
  });
  const std::vector<int32_t> ids = prompt(16);
  const ModelRun a = run_model(root / "q", CpuIsa::auto_detect, ids, {}), b = run_model(root / "flip", CpuIsa::auto_detect, ids, {});
  const test::LogitsDiff d = test::compare_logits(b.prefill, a.prefill, 8192);
  EXPECT_GT(d.max_abs_err, 0.1 * d.max_abs_ref);
}

}  // namespace
}  // namespace hlwq
