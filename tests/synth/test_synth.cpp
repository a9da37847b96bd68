// hlwq synth: tensor lists against real checkpoints (names, dtypes, shapes), determinism across seeds, threads and
// chunk sizes, value statistics, --layers patterns, tokenizer choice, and that a synthetic model loads and runs.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "synth/synth_config.h"
#include "synth/synth_writer.h"
#include "test_paths.h"

namespace hlwq {
namespace {

namespace fs = std::filesystem;
using test::scratch_dir;
using test::shared_dir;
using test::source_dir;

nlohmann::json config_of(const fs::path& model_dir) { return synth_like_config(model_dir.string(), {}); }

ModelConfig parsed(nlohmann::json j) {
  synth_strip_quantization(j);
  return parse_model_config(j);
}

// name -> "DTYPE [shape]" of every tensor of a checkpoint (vision tower and MTP left out: synth writes the text model).
std::map<std::string, std::string> checkpoint_tensors(const fs::path& dir) {
  Checkpoint ck(dir.string());
  std::map<std::string, std::string> m;
  for (const std::string& n : ck.names()) {
    if (n.starts_with("model.visual.") || n.starts_with("mtp.")) continue;
    const TensorEntry& e = ck.entry(n);
    m[n] = fmt::format("{} {}", dtype_name(e.dtype), fmt::join(e.shape, "x"));
  }
  return m;
}

std::map<std::string, std::string> plan_tensors(const SynthPlan& p) {
  std::map<std::string, std::string> m;
  for (const SynthTensor& t : p.tensors) m[t.spec.name] = fmt::format("{} {}", dtype_name(t.spec.dtype), fmt::join(t.spec.shape, "x"));
  return m;
}

// Same names, dtypes and shapes as checkpoints written by transformers (bf16) and by the seed's CT export.
TEST(SynthPlan, MatchesRealCheckpoints) {
  for (const auto& [dir, fmt_] : std::vector<std::pair<fs::path, SynthFormat>>{
           {source_dir() / "models/tiny-moe-dev", SynthFormat::bf16},
           {shared_dir() / "fixtures/tiny-random-bf16", SynthFormat::bf16},
           {shared_dir() / "fixtures/tiny-random-ct-int4", SynthFormat::ct_int4},
           {shared_dir() / "fixtures/tiny-random-small-ct-int4", SynthFormat::ct_int4}}) {
    if (!fs::exists(dir)) continue;
    SCOPED_TRACE(dir.string());
    const auto want = checkpoint_tensors(dir);
    const auto got = plan_tensors(synth_plan(parsed(config_of(dir)), fmt_));
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(got, want);
  }
}

TEST(SynthPlan, CtQuantizationConfigIsTheSeeds) {
  const fs::path dir = shared_dir() / "fixtures/tiny-random-ct-int4";
  if (!fs::exists(dir)) GTEST_SKIP() << "no fixture " << dir;
  const nlohmann::json cfg = config_of(dir);
  EXPECT_EQ(synth_plan(parsed(cfg), SynthFormat::ct_int4).quantization_config, cfg["quantization_config"]);
  EXPECT_TRUE(synth_plan(parsed(cfg), SynthFormat::bf16).quantization_config.is_null());
}

// Qwen3.6-35B-A3B: the sizes SPEC §1/§5 states, recomputed from the plan.
TEST(SynthPlan, Qwen36Sizes) {
  const SynthPlan p = synth_plan(parsed(synth_qwen36_config()), SynthFormat::ct_int4);
  uint64_t expert = 0, experts = 0, total = 0;
  for (const SynthTensor& t : p.tensors) {
    total += t.spec.nbytes();
    if (t.spec.name.find(".mlp.experts.") == std::string::npos) continue;
    experts += t.spec.nbytes();
    if (t.spec.name.starts_with("model.language_model.layers.0.mlp.experts.7.")) expert += t.spec.nbytes();
  }
  EXPECT_EQ(expert, 1622016u + 3 * 16);  // packed + scales (SPEC) + three weight_shape I64 [2] (16 bytes each)
  EXPECT_NEAR(double(experts) / 1e9, 16.6, 0.05);  // "all routed experts 16.6 GB"
  EXPECT_NEAR(double(total - experts) / 1e9, 2.8, 0.1);  // "non-expert resident set ≈ 2.8 GB"
}

TEST(SynthConfig, LayersKeepThePattern) {
  nlohmann::json q = synth_qwen36_config();
  synth_set_layers(q, 9);
  const ModelConfig c = parsed(q);
  ASSERT_EQ(c.n_layers, 9);
  for (int i = 0; i < 9; ++i)
    EXPECT_EQ(c.layer_types[size_t(i)], (i + 1) % 4 == 0 ? LayerKind::full_attention : LayerKind::linear_attention) << i;
  nlohmann::json t = config_of(source_dir() / "models/tiny-moe-dev");  // linear, linear, full, ...
  synth_set_layers(t, 4);
  EXPECT_EQ(t["layer_types"], nlohmann::json({"linear_attention", "linear_attention", "full_attention", "linear_attention"}));
  EXPECT_THROW(synth_set_layers(t, 0), Error);
  EXPECT_THROW(synth_like_config("no-such-model", {source_dir() / "models"}), Error);
  EXPECT_EQ(synth_like_config("tiny-moe-dev", {source_dir() / "models"}), config_of(source_dir() / "models/tiny-moe-dev"));
}

std::vector<uint16_t> fill_bf16(const std::string& name, SynthValues v, uint64_t n, uint64_t seed = 1) {
  SynthTensor t{{name, DType::BF16, {int64_t(n)}}, v};
  std::vector<uint16_t> out(n);
  synth_fill(t, synth_tensor_seed(seed, name), 0, n, out.data());
  return out;
}

TEST(SynthValues, Statistics) {
  constexpr uint64_t n = 1 << 20;
  auto moments = [](const std::vector<uint16_t>& v) {
    double s = 0, s2 = 0;
    for (uint16_t x : v) s += bf16_to_f32(x), s2 += double(bf16_to_f32(x)) * bf16_to_f32(x);
    const double m = s / double(v.size());
    return std::pair{m, std::sqrt(s2 / double(v.size()) - m * m)};
  };
  auto [m, sd] = moments(fill_bf16("a.weight", SynthValues::normal, n));
  EXPECT_NEAR(m, 0, 1e-4);
  EXPECT_NEAR(sd, 0.02, 2e-4);
  std::tie(m, sd) = moments(fill_bf16("n.weight", SynthValues::norm_plain, n));
  EXPECT_NEAR(m, 1, 1e-3);
  for (uint16_t x : fill_bf16("A_log", SynthValues::a_log, 4096)) {
    EXPECT_GE(bf16_to_f32(x), 0.0f);
    EXPECT_LE(bf16_to_f32(x), std::log(16.0f) + 0.02f);
  }
  for (uint16_t x : fill_bf16("s.weight_scale", SynthValues::int4_scale, 4096)) {
    EXPECT_GT(bf16_to_f32(x), 0.02f / 7 * 0.74f);
    EXPECT_LT(bf16_to_f32(x), 0.02f / 7 * 1.26f);
  }
  // every nibble position takes every code about equally often
  SynthTensor t{{"p.weight_packed", DType::I32, {int64_t(n)}}, SynthValues::int4_packed};
  std::vector<uint32_t> w(n);
  synth_fill(t, 7, 0, n, w.data());
  for (int pos = 0; pos < 8; ++pos) {
    std::vector<int64_t> count(16);
    for (uint32_t x : w) ++count[(x >> (4 * pos)) & 0xF];
    for (int64_t c : count) EXPECT_NEAR(double(c) / n, 1.0 / 16, 0.002) << pos;
  }
  // the value stream depends on the tensor name and the seed, and a range equals the same range of the whole
  EXPECT_NE(fill_bf16("a.weight", SynthValues::normal, 64), fill_bf16("b.weight", SynthValues::normal, 64));
  EXPECT_NE(fill_bf16("a.weight", SynthValues::normal, 64, 1), fill_bf16("a.weight", SynthValues::normal, 64, 2));
  const auto whole = fill_bf16("a.weight", SynthValues::normal, 100);
  SynthTensor a{{"a.weight", DType::BF16, {100}}, SynthValues::normal};
  std::vector<uint16_t> part(30);
  synth_fill(a, synth_tensor_seed(1, "a.weight"), 50, 30, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + 50));
}

std::string file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The bytes of every shard of a checkpoint, concatenated in name order.
std::string shard_bytes(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string all;
  for (const fs::path& f : files) all += f.filename().string() + file_bytes(f);
  return all;
}

fs::path write_small(const std::string& name, uint64_t seed, uint64_t chunk, int threads, uint64_t shard = 5000000000ull) {
  nlohmann::json cfg = config_of(source_dir() / "models/tiny-moe-dev");
  synth_set_layers(cfg, 1);
  SynthOptions o;
  o.dst = scratch_dir("synth-" + name) / "model";
  o.seed = seed;
  o.force = true;
  o.chunk_bytes = chunk;
  o.max_shard_bytes = shard;
  o.log = nullptr;
  o.tokenizer_dir = source_dir() / "models/tiny-moe-dev";
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  synth_write(cfg, o);
  omp_set_num_threads(before);
  return o.dst;
}

TEST(SynthWrite, DeterministicAcrossThreadsAndChunks) {
  const std::string a = shard_bytes(write_small("a", 1, 64 << 20, 2));
  EXPECT_EQ(a, shard_bytes(write_small("b", 1, 8192, 1)));  // other chunking and thread count: same bytes
  EXPECT_NE(a, shard_bytes(write_small("c", 2, 64 << 20, 2)));  // another seed: other bytes
  // sharded output: several files, the same tensors
  const auto one = checkpoint_tensors(write_small("a", 1, 64 << 20, 2));
  const fs::path d = write_small("d", 1, 1 << 20, 2, 4 << 20);
  EXPECT_TRUE(fs::exists(d / "model.safetensors.index.json"));
  EXPECT_EQ(checkpoint_tensors(d), one);
}

TEST(SynthWrite, LoadsAndRunsFinite) {
  for (SynthFormat f : {SynthFormat::ct_int4, SynthFormat::bf16}) {
    nlohmann::json cfg = config_of(source_dir() / "models/tiny-moe-dev");
    synth_set_layers(cfg, 4);  // 3 GDN + 1 attention with tiny-moe-dev's pattern cycled
    SynthOptions o;
    o.dst = scratch_dir("synth-run") / "model";
    o.force = true;
    o.format = f;
    o.log = nullptr;
    synth_write(cfg, o);
    EXPECT_FALSE(fs::exists(o.dst / "tokenizer.json"));  // none was asked for
    const nlohmann::json written = nlohmann::json::parse(file_bytes(o.dst / "config.json"));
    EXPECT_EQ(written.contains("quantization_config"), f == SynthFormat::ct_int4);
    Model m = Model::load(o.dst.string());
    EXPECT_EQ(m.config().n_layers, 4);
    std::vector<int32_t> tok(40);
    for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t((i * 977 + 5) % 8192);
    Sequence s = m.new_sequence(64);
    std::vector<float> logits(size_t(40 * 8192));
    m.forward(tok.data(), 40, s, logits.data(), forward_all_logits());
    double sum2 = 0;
    for (float x : logits) {
      ASSERT_TRUE(std::isfinite(x));
      sum2 += double(x) * x;
    }
    EXPECT_GT(sum2, 0);  // not all zero
  }
}

TEST(SynthTokenizer, PicksOneThatFits) {
  const fs::path qwen = shared_dir() / "fixtures/qwen3-tokenizer", tiny = source_dir() / "models/tiny-moe-dev";
  if (!fs::exists(qwen)) GTEST_SKIP() << "no fixture " << qwen;
  const int64_t qmax = tokenizer_max_id(qwen / "tokenizer.json");
  EXPECT_GT(qmax, 151000);
  EXPECT_LT(qmax, 248320);
  EXPECT_LT(tokenizer_max_id(tiny / "tokenizer.json"), 8192);
  EXPECT_EQ(synth_pick_tokenizer({qwen, tiny}, 248320), qwen);
  EXPECT_EQ(synth_pick_tokenizer({qwen, tiny}, 8192), tiny);  // Qwen3's ids do not fit a vocab of 8192
  EXPECT_EQ(synth_pick_tokenizer({qwen, tiny}, 100), std::nullopt);
}

}  // namespace
}  // namespace hlwq
