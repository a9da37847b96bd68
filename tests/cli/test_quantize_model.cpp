// hlwq quantize --method rtn must reproduce the reference compressed-tensors checkpoints made by
// ../shared/tools/fixtures/common.py (torch) tensor for tensor: same keys, shapes, dtypes and bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/compressed_tensors.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/quantize_model.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

namespace {

// Returns "" when a and b hold the same tensors byte for byte, else a description of the first differences.
std::string diff_checkpoints(const std::string& want_dir, const std::string& got_dir) {
  Checkpoint want(want_dir), got(got_dir);
  std::string diff;
  int n = 0;
  auto note = [&](const std::string& s) {
    if (n++ < 8) diff += s + "\n";
  };
  for (const auto& name : want.names()) {
    if (!got.has(name)) {
      note("missing " + name);
      continue;
    }
    TensorView a = want.view(name), b = got.view(name);
    if (a.dtype != b.dtype || a.shape != b.shape) note(fmt::format("{}: want {}, got {}", name, a.desc(), b.desc()));
    else if (std::memcmp(a.data, b.data, a.nbytes()) != 0) note(name + ": bytes differ");
  }
  for (const auto& name : got.names())
    if (!want.has(name)) note("unexpected " + name);
  if (n > 8) diff += fmt::format("... {} differences in all\n", n);
  return diff;
}

fs::path small_fixture(const std::string& name) {
  const fs::path in_repo = hlwq::test::source_dir() / "testdata" / name;
  return fs::exists(in_repo) ? in_repo : hlwq::test::shared_dir() / "fixtures" / name;
}

QuantizeOptions rtn_options(const fs::path& src, const fs::path& dst) {
  QuantizeOptions o;
  o.src = src.string();
  o.dst = dst.string();
  o.method = Int4Method::rtn;
  o.progress = false;
  return o;
}

}  // namespace

TEST(QuantizeModel, RtnReproducesSmallCtFixture) {
  const fs::path src = small_fixture("tiny-random-small-bf16"), want = small_fixture("tiny-random-small-ct-int4");
  if (!fs::exists(src)) GTEST_SKIP() << hlwq::test::shared_skip_message("tiny-random-small-bf16");
  const fs::path dst = hlwq::test::scratch_dir("qm_small") / "out";
  quantize_model(rtn_options(src, dst));
  EXPECT_EQ(diff_checkpoints(want.string(), dst.string()), "");
  // config: the seed's quantization_config, text config untouched
  auto got = read_json_file((dst / "config.json").string());
  auto ref = read_json_file((want / "config.json").string());
  EXPECT_EQ(got["quantization_config"], ref["quantization_config"]);
  EXPECT_EQ(got["text_config"], ref["text_config"]);
  EXPECT_TRUE(fs::exists(dst / "generation_config.json"));
}

TEST(QuantizeModel, RtnReproducesLargeShardedCtFixture) {
  HLWQ_REQUIRE_SHARED("tiny-random-bf16");
  const fs::path fx = hlwq::test::shared_dir() / "fixtures";
  const fs::path dst = hlwq::test::scratch_dir("qm_large") / "out";
  QuantizeOptions o = rtn_options(fx / "tiny-random-bf16", dst);
  o.max_shard_bytes = 1000000;  // several shards: the comparison must not depend on the layout
  quantize_model(o);
  EXPECT_EQ(diff_checkpoints((fx / "tiny-random-ct-int4").string(), dst.string()), "");
}

TEST(QuantizeModel, ComparisonDetectsAnotherMethod) {
  // The fixture comparison can fail: the MSE-scale method writes different scales and words.
  const fs::path src = small_fixture("tiny-random-small-bf16"), want = small_fixture("tiny-random-small-ct-int4");
  if (!fs::exists(src)) GTEST_SKIP() << hlwq::test::shared_skip_message("tiny-random-small-bf16");
  const fs::path dst = hlwq::test::scratch_dir("qm_mse") / "out";
  QuantizeOptions o = rtn_options(src, dst);
  o.method = Int4Method::mse;
  QuantizeReport r = quantize_model(o);
  EXPECT_NE(diff_checkpoints(want.string(), dst.string()), "");
  // and it is the better method: lower weight error than the seed's RTN
  QuantizeReport rtn = quantize_model(rtn_options(src, hlwq::test::scratch_dir("qm_rtn") / "out"));
  EXPECT_LT(r.error.rel(), rtn.error.rel() * 0.9);
}

TEST(QuantizeModel, LanguageModelOnlyDropsVisual) {
  const fs::path src = small_fixture("tiny-random-small-bf16");
  if (!fs::exists(src)) GTEST_SKIP() << hlwq::test::shared_skip_message("tiny-random-small-bf16");
  const fs::path dst = hlwq::test::scratch_dir("qm_lmonly") / "out";
  QuantizeOptions o = rtn_options(src, dst);
  o.plan.language_model_only = true;
  QuantizeReport r = quantize_model(o);
  EXPECT_EQ(r.n_dropped_visual, 21);
  Checkpoint out(dst.string());
  for (const auto& n : out.names()) EXPECT_EQ(n.find("visual"), std::string::npos) << n;
}

TEST(QuantizeModel, MtpTensorsKeptOrDropped) {
  // A flat-prefix source (the demo model) with an mtp head added: kept in bf16 by default, dropped and
  // counted with --language-model-only.
  const fs::path demo = hlwq::test::source_dir() / "models" / "tiny-moe-dev";
  const fs::path root = hlwq::test::scratch_dir("qm_mtp");
  const fs::path src = root / "src";
  fs::copy(demo, src, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(src))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  {
    // a third shard holding two mtp tensors, registered in the index
    fs::create_directories(root / "mtp");
    std::vector<float> w(256 * 256, 0.01f);
    CheckpointWriter wr(root / "mtp", {{"mtp.fc.weight", DType::F32, {256, 256}}, {"mtp.norm.weight", DType::F32, {256}}},
                        1 << 30);
    wr.write("mtp.fc.weight", w.data(), w.size() * 4);
    wr.write("mtp.norm.weight", w.data(), 256 * 4);
    wr.finish();
  }
  fs::copy_file(root / "mtp" / "model.safetensors", src / "mtp.safetensors");
  auto index = read_json_file((src / "model.safetensors.index.json").string());
  index["weight_map"]["mtp.fc.weight"] = "mtp.safetensors";
  index["weight_map"]["mtp.norm.weight"] = "mtp.safetensors";
  std::ofstream(src / "model.safetensors.index.json") << index.dump();

  QuantizeReport kept = quantize_model(rtn_options(src, root / "kept"));
  EXPECT_EQ(kept.n_dropped_mtp, 0);
  Checkpoint k((root / "kept").string());
  EXPECT_EQ(k.entry("mtp.fc.weight").dtype, DType::F32);  // never quantized, kept as stored
  EXPECT_TRUE(k.has("model.layers.0.mlp.experts.3.up_proj.weight_packed"));
  EXPECT_TRUE(k.has("model.embed_tokens.weight"));

  QuantizeOptions o = rtn_options(src, root / "dropped");
  o.plan.language_model_only = true;
  QuantizeReport dropped = quantize_model(o);
  EXPECT_EQ(dropped.n_dropped_mtp, 2);
  EXPECT_FALSE(Checkpoint((root / "dropped").string()).has("mtp.fc.weight"));
}

TEST(QuantizeModel, FusedExpertsAreSplitPerExpert) {
  // Build a fused-expert source from the per-expert small fixture and check the output is identical.
  const fs::path src = small_fixture("tiny-random-small-bf16"), want = small_fixture("tiny-random-small-ct-int4");
  if (!fs::exists(src)) GTEST_SKIP() << hlwq::test::shared_skip_message("tiny-random-small-bf16");
  const fs::path root = hlwq::test::scratch_dir("qm_fused");
  const fs::path fused = root / "fused";
  fs::create_directories(fused);
  Checkpoint ck(src.string());
  ModelConfig cfg = load_model_config(src.string());
  const int64_t E = cfg.n_experts, I = cfg.moe_intermediate, H = cfg.hidden_size;
  std::vector<TensorSpec> specs;
  std::map<std::string, std::vector<uint8_t>> data;
  const std::string p = "model.language_model.layers.";
  for (const auto& name : ck.names()) {
    if (name.find(".mlp.experts.") != std::string::npos) continue;
    TensorView v = ck.view(name);
    specs.push_back({name, v.dtype, v.shape});
    data[name].assign(static_cast<const uint8_t*>(v.data), static_cast<const uint8_t*>(v.data) + v.nbytes());
  }
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string gu = fmt::format("{}{}.mlp.experts.gate_up_proj", p, l);
    const std::string dn = fmt::format("{}{}.mlp.experts.down_proj", p, l);
    specs.push_back({gu, DType::BF16, {E, 2 * I, H}});
    specs.push_back({dn, DType::BF16, {E, H, I}});
    for (int64_t e = 0; e < E; ++e)
      for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
        TensorView v = ck.view(fmt::format("{}{}.mlp.experts.{}.{}.weight", p, l, e, proj));
        auto& d = data[std::string(proj) == "down_proj" ? dn : gu];
        d.insert(d.end(), static_cast<const uint8_t*>(v.data), static_cast<const uint8_t*>(v.data) + v.nbytes());
      }
  }
  {
    CheckpointWriter w(fused, specs, 1 << 30);
    for (const auto& s : specs) w.write(s.name, data[s.name].data(), data[s.name].size());
    w.finish();
  }
  fs::copy_file(src / "config.json", fused / "config.json");
  const fs::path dst = root / "out";
  quantize_model(rtn_options(fused, dst));
  EXPECT_EQ(diff_checkpoints(want.string(), dst.string()), "");
}

TEST(QuantizeModel, FusedMtpExpertsAndInProjBaAreNeverQuantized) {
  // SPEC §3: mtp tensors are never quantized, fused experts included (the fused branch used to run before the
  // role check). Qwen3-Next's fused in_proj_ba is keep-listed like in_proj_a/b, and its ignore pattern is added
  // to quantization_config only when the model has one.
  EXPECT_TRUE(ct_name_is_kept("model.layers.0.linear_attn.in_proj_ba.weight"));
  EXPECT_EQ(ct_quantization_config({}, false, {"re:x"})["ignore"].back(), "re:x");
  EXPECT_EQ(ct_quantization_config({})["ignore"], ct_quantization_config({}, false, {})["ignore"]);

  const fs::path demo = hlwq::test::source_dir() / "models" / "tiny-moe-dev";
  const fs::path root = hlwq::test::scratch_dir("qm_mtp_fused");
  const fs::path src = root / "src";
  fs::copy(demo, src, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(src))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  const ModelConfig cfg = load_model_config(src.string());
  const int64_t E = cfg.n_experts, I = cfg.moe_intermediate, H = cfg.hidden_size;
  const std::string gu = "mtp.layers.0.mlp.experts.gate_up_proj", dn = "mtp.layers.0.mlp.experts.down_proj";
  const std::string ba = "model.layers.0.linear_attn.in_proj_ba.weight";
  const std::vector<TensorSpec> extra = {
      {gu, DType::BF16, {E, 2 * I, H}}, {dn, DType::BF16, {E, H, I}}, {ba, DType::BF16, {64, H}}};
  {
    fs::create_directories(root / "extra");
    CheckpointWriter wr(root / "extra", extra, 1 << 30);
    for (const auto& s : extra) {
      std::vector<uint16_t> v(s.nbytes() / 2, 0x3c23);  // bf16 0.01
      wr.write(s.name, v.data(), s.nbytes());
    }
    wr.finish();
  }
  fs::copy_file(root / "extra" / "model.safetensors", src / "extra.safetensors");
  auto index = read_json_file((src / "model.safetensors.index.json").string());
  for (const auto& s : extra) index["weight_map"][s.name] = "extra.safetensors";
  std::ofstream(src / "model.safetensors.index.json") << index.dump();

  quantize_model(rtn_options(src, root / "kept"));
  Checkpoint k((root / "kept").string());
  for (const auto& s : extra) {
    ASSERT_TRUE(k.has(s.name)) << s.name;  // copied under its own name, unchanged
    EXPECT_EQ(k.entry(s.name).dtype, DType::BF16) << s.name;
    EXPECT_EQ(k.entry(s.name).shape, s.shape) << s.name;
  }
  for (const auto& n : k.names())
    EXPECT_FALSE(n.rfind("mtp.", 0) == 0 && n.find("weight_packed") != std::string::npos) << n;
  auto cfg_out = read_json_file(((root / "kept") / "config.json").string());
  const auto& ignore = cfg_out["quantization_config"]["ignore"];
  EXPECT_NE(std::find(ignore.begin(), ignore.end(), "re:.*\\.in_proj_ba$"), ignore.end()) << ignore.dump();

  QuantizeOptions o = rtn_options(src, root / "dropped");
  o.plan.language_model_only = true;
  QuantizeReport dropped = quantize_model(o);
  EXPECT_EQ(dropped.n_dropped_mtp, 2);
  Checkpoint d((root / "dropped").string());
  EXPECT_FALSE(d.has(gu));
  EXPECT_FALSE(d.has(dn));
  EXPECT_TRUE(d.has(ba));

  // Without an in_proj_ba tensor the ignore list is exactly the seed's (no extra pattern).
  quantize_model(rtn_options(demo, root / "plain"));
  auto plain_cfg = read_json_file(((root / "plain") / "config.json").string());
  const auto& plain_ignore = plain_cfg["quantization_config"]["ignore"];
  EXPECT_EQ(std::find(plain_ignore.begin(), plain_ignore.end(), "re:.*\\.in_proj_ba$"), plain_ignore.end());
}
