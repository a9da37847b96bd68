// Loader validation on edited copies of the bundled tiny-random-small checkpoints: a transposed tensor, a wrong
// dtype, a missing tensor, transposed INT4 scales and an unknown extra tensor are each refused with a message
// naming the tensor with the expected and actual shape/dtype. Fused experts load like per-expert ones.
#include <gtest/gtest.h>

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "model/loader.h"
#include "model/model.h"
#include "model_test_util.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

fs::path testdata(const std::string& rel) { return test::source_dir() / "testdata" / rel; }
const std::string kPre = "model.language_model.layers.";

std::string load_error(const fs::path& dir) {
  try {
    Model::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without error)";
}

void transpose_2d(test::EditedTensor& t) {
  const int64_t rows = t.spec.shape[0], cols = t.spec.shape[1];
  const size_t es = dtype_size(t.spec.dtype);
  std::vector<uint8_t> tr(t.bytes.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) std::memcpy(&tr[size_t(c * rows + r) * es], &t.bytes[size_t(r * cols + c) * es], es);
  t.bytes = std::move(tr);
  t.spec.shape = {cols, rows};
}

TEST(Loader, TransposedTensorNamesExpectedAndActual) {
  const fs::path dir = test::scratch_dir("loader-transposed") / "ckpt";
  const std::string name = kPre + "3.mlp.gate.weight";
  test::write_edited_checkpoint(testdata("tiny-random-small-bf16"), dir, [&](test::EditedTensor& t) {
    if (t.spec.name == name) transpose_2d(t);
    return true;
  });
  EXPECT_EQ(load_error(dir), "expected [8, 128] BF16, got [128, 8] BF16 for " + name);
}

TEST(Loader, WrongDtypeNamesExpectedAndActual) {
  const fs::path dir = test::scratch_dir("loader-dtype") / "ckpt";
  const std::string name = kPre + "0.linear_attn.in_proj_z.weight";
  test::write_edited_checkpoint(testdata("tiny-random-small-bf16"), dir, [&](test::EditedTensor& t) {
    if (t.spec.name == name) t.spec.dtype = DType::I16;  // same bytes, integer type
    return true;
  });
  EXPECT_EQ(load_error(dir), "expected [128, 128] BF16|F16|F32, got [128, 128] I16 for " + name);
}

TEST(Loader, MissingTensorIsNamed) {
  const fs::path dir = test::scratch_dir("loader-missing") / "ckpt";
  const std::string name = kPre + "1.linear_attn.A_log";
  test::write_edited_checkpoint(testdata("tiny-random-small-bf16"), dir,
                                [&](test::EditedTensor& t) { return t.spec.name != name; });
  const std::string err = load_error(dir);
  EXPECT_NE(err.find("missing tensor " + name), std::string::npos) << err;
}

TEST(Loader, TransposedInt4ScaleShapeIsRefused) {
  const fs::path dir = test::scratch_dir("loader-int4-scale") / "ckpt";
  const std::string name = kPre + "3.self_attn.q_proj.weight_scale";
  test::write_edited_checkpoint(testdata("tiny-random-small-ct-int4"), dir, [&](test::EditedTensor& t) {
    if (t.spec.name == name) transpose_2d(t);
    return true;
  });
  EXPECT_EQ(load_error(dir), "expected [256, 1] BF16, got [1, 256] BF16 for " + name);
}

TEST(Loader, UnknownTensorIsRefused) {
  const fs::path dir = test::scratch_dir("loader-extra") / "ckpt";
  test::EditedTensor bias{{kPre + "3.self_attn.o_proj.bias", DType::BF16, {128}}, std::vector<uint8_t>(256, 0)};
  test::write_edited_checkpoint(testdata("tiny-random-small-bf16"), dir, [](test::EditedTensor&) { return true; },
                                {bias});
  const std::string err = load_error(dir);
  EXPECT_NE(err.find(kPre + "3.self_attn.o_proj.bias"), std::string::npos) << err;
}

// Fused experts (gate_up_proj [E, 2I, H], down_proj [E, H, I]) give the same logits as per-expert keys.
TEST(Loader, FusedExpertsEqualPerExpert) {
  const fs::path src = testdata("tiny-random-small-bf16");
  const fs::path dir = test::scratch_dir("loader-fused") / "ckpt";
  Model ref = Model::load(src);
  const ModelConfig& c = ref.config();
  const int64_t E = c.n_experts, I = c.moe_intermediate, H = c.hidden_size;
  Checkpoint ck(src.string());
  std::vector<test::EditedTensor> fused;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string at = kPre + std::to_string(l) + ".mlp.experts.";
    test::EditedTensor gu{{at + "gate_up_proj", DType::BF16, {E, 2 * I, H}}, {}}, dn{{at + "down_proj", DType::BF16, {E, H, I}}, {}};
    for (int64_t e = 0; e < E; ++e)
      for (const char* p : {"gate_proj", "up_proj"}) {
        TensorView v = ck.view(at + std::to_string(e) + "." + p + ".weight");
        gu.bytes.insert(gu.bytes.end(), v.as<uint8_t>(), v.as<uint8_t>() + v.nbytes());
      }
    for (int64_t e = 0; e < E; ++e) {
      TensorView v = ck.view(at + std::to_string(e) + ".down_proj.weight");
      dn.bytes.insert(dn.bytes.end(), v.as<uint8_t>(), v.as<uint8_t>() + v.nbytes());
    }
    fused.push_back(std::move(gu));
    fused.push_back(std::move(dn));
  }
  test::write_edited_checkpoint(
      src, dir, [](test::EditedTensor& t) { return t.spec.name.find(".mlp.experts.") == std::string::npos; }, fused);
  Model m = Model::load(dir);
  std::vector<int32_t> tok{5, 17, 300, 2, 99, 411, 7, 8};
  std::vector<float> a(size_t(8 * c.vocab_size)), b(a.size());
  Sequence sa = ref.new_sequence(8), sb = m.new_sequence(8);
  ref.forward(tok.data(), 8, sa, a.data(), forward_all_logits());
  m.forward(tok.data(), 8, sb, b.data(), forward_all_logits());
  EXPECT_EQ(a, b);
}

TEST(Loader, UnsupportedArchIsNamed) {
  // The arch is checked by the weight loader, so the directory needs the tensors too.
  const fs::path dir = test::scratch_dir("loader-arch") / "ckpt";
  test::write_edited_checkpoint(testdata("tiny-random-small-bf16"), dir, [](test::EditedTensor&) { return true; });
  nlohmann::json cfg = read_json_file((testdata("tiny-random-small-bf16") / "config.json").string());
  nlohmann::json text = cfg["text_config"];
  text["model_type"] = "qwen3_next";
  write_file(dir / "config.json", text.dump());
  const std::string err = load_error(dir);
  EXPECT_NE(err.find("qwen3_next is not yet supported"), std::string::npos) << err;
}

TEST(Loader, UnnormalizedTopkRoutingIsRefused) {
  // hf_config always sets norm_topk_prob for qwen3_5_moe; a config that did not would get different routing
  // weights than moe_forward computes, so the loader refuses it.
  const fs::path dir = testdata("tiny-random-small-bf16");
  ModelConfig cfg = load_model_config(dir.string());
  cfg.norm_topk_prob = false;
  const Checkpoint ck(dir.string());
  try {
    load_model_weights(ck, cfg);
    FAIL() << "loaded with norm_topk_prob = false";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("norm_topk_prob"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hlwq
