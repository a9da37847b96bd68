// The HLWQ exports end to end on the repository's small random Qwen3.5-MoE: the native format round-trips
// (every quantized Linear decodes exactly to what the codec makes of the source weight, kept tensors are byte
// copies, the config names the table), a flipped code order in the file is detected, the config block is
// validated; the seed's hlwq-q5 layout round-trips, and `--format ct-int4` from it is byte-identical to the
// seed's cascade run on the bf16 original, also for a fused 3-D expert tensor; bad Q5 input is refused clearly.
// Mixed widths (--bits-for, quantization_config.overrides): each module decodes at its own width and table,
// bad overrides and bad --bits-for are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>

#include "core/dtype.h"
#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/hf_config.h"
#include "io/hlwq_format.h"
#include "io/safetensors.h"
#include "io/seed_q5.h"
#include "quant/hlwq_checkpoint.h"
#include "quant/hlwq_export.h"
#include "quant/hlwq_q5_pack.h"
#include "quant/lloyd_max.h"
#include "quant/quantize_model.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

namespace {

fs::path small_src() { return test::source_dir() / "testdata" / "tiny-random-small-bf16"; }

QuantizeOptions options(const fs::path& src, const fs::path& dst, QuantFormat f, int bits = 4) {
  QuantizeOptions o;
  o.src = src.string();
  o.dst = dst.string();
  o.format = f;
  o.hlwq_bits = bits;
  o.progress = false;
  return o;
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  convert_to_f32(t.dtype, t.data, v.data(), v.size());
  return v;
}

// Checks a native export against the codec applied to the source; returns the number of quantized modules that
// do not decode exactly as expected (0 for a correct file) and counts modules and kept tensors seen.
struct NativeCheck {
  int n_quantized = 0, n_kept = 0, n_bad = 0;
  double sq_err = 0, sq_ref = 0;
};
NativeCheck check_native(const fs::path& src_dir, const fs::path& dir, HlwqScale mode) {
  const ModelConfig cfg = load_model_config(dir.string());
  EXPECT_TRUE(cfg.quant && cfg.quant->quant_method == "hlwq");
  const HlwqFormat f = parse_hlwq_quantization_config(cfg.raw["quantization_config"], "config.json");
  Checkpoint src(src_dir.string()), out(dir.string());
  NativeCheck c;
  for (const std::string& name : src.names()) {
    const std::string base = name.size() > 7 ? name.substr(0, name.size() - 7) : name;  // strip ".weight"
    if (!hlwq_has_native(out, base)) {
      if (out.has(name)) {
        const TensorView a = src.view(name), b = out.view(name);
        EXPECT_EQ(a.shape, b.shape) << name;
        EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes()), 0) << name;
        ++c.n_kept;
      }
      continue;
    }
    const TensorView t = src.view(name);
    const int64_t rows = t.shape[0], in = t.shape[1];
    const HlwqMatrixView v = hlwq_native_view(out, base, rows, in, f);
    const HlwqCodebook cb(*hlwq_resolve(f, base).codebook);  // the module's width (overrides) decides the table
    EXPECT_EQ(v.bits, hlwq_resolve(f, base).bits) << base;
    const std::vector<float> w = to_f32(t);
    const HlwqCodes ref = hlwq_encode(w.data(), rows, in, cb, mode);
    std::vector<float> want(w.size()), got(static_cast<size_t>(in));
    hlwq_decode(ref, cb, want.data());
    bool same = true;
    for (int64_t r = 0; r < rows; ++r) {
      hlwq_decode_row(v, r, got.data());
      same = same && std::memcmp(got.data(), want.data() + r * in, size_t(in) * 4) == 0;
      for (int64_t k = 0; k < in; ++k) {
        const double d = double(got[size_t(k)]) - w[size_t(r * in + k)];
        c.sq_err += d * d;
        c.sq_ref += double(w[size_t(r * in + k)]) * w[size_t(r * in + k)];
      }
    }
    c.n_bad += !same;
    ++c.n_quantized;
  }
  return c;
}

// Rewrites the codes of every native module in dir/model.safetensors with the opposite bit order.
void flip_code_order(const fs::path& dir) {
  Checkpoint ck(dir.string());
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> patches;  // file offset, new bytes
  const std::string file = (dir / "model.safetensors").string();
  const auto* base = static_cast<const uint8_t*>(ck.view(ck.names().front()).data) - ck.entry(ck.names().front()).begin;
  std::ifstream in(file, std::ios::binary);
  uint64_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 8);
  const int bits = read_json_file((dir / "config.json").string())["quantization_config"]["bits"];
  for (const std::string& name : ck.names()) {
    if (name.find(".hlwq_codes") == std::string::npos) continue;
    const TensorView t = ck.view(name);
    const auto* p = static_cast<const uint8_t*>(t.data);
    const int64_t n = int64_t(t.nbytes()) / bits * 8;
    std::vector<uint8_t> codes(static_cast<size_t>(n)), flipped(t.nbytes());
    hlwq_unpack_codes(p, n, bits, HlwqBitOrder::lsb_first, codes.data());
    hlwq_pack_codes(codes.data(), n, bits, HlwqBitOrder::msb_first, flipped.data());
    patches.emplace_back(8 + hlen + uint64_t(p - base), std::move(flipped));
  }
  in.close();
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  for (const auto& [off, bytes] : patches) {
    f.seekp(std::streamoff(off));
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
}

std::string diff_checkpoints(const fs::path& want_dir, const fs::path& got_dir) {
  Checkpoint want(want_dir.string()), got(got_dir.string());
  std::string diff;
  for (const auto& name : want.names()) {
    if (!got.has(name)) {
      diff += "missing " + name + "\n";
      continue;
    }
    const TensorView a = want.view(name), b = got.view(name);
    if (a.dtype != b.dtype || a.shape != b.shape || std::memcmp(a.data, b.data, a.nbytes()) != 0)
      diff += "differs " + name + "\n";
  }
  for (const auto& name : got.names())
    if (!want.has(name)) diff += "unexpected " + name + "\n";
  return diff;
}

}  // namespace

TEST(QuantizeHlwq, NativeRoundTripsEveryWidthUsersPick) {
  for (const int bits : {3, 4, 5}) {
    const fs::path dst = test::scratch_dir("hlwq_native_" + std::to_string(bits)) / "out";
    const QuantizeReport r = quantize_model(options(small_src(), dst, QuantFormat::hlwq, bits));
    const NativeCheck c = check_native(small_src(), dst, HlwqScale::least_squares);
    EXPECT_GT(c.n_quantized, 100) << bits;
    EXPECT_GT(c.n_kept, 10) << bits;
    EXPECT_EQ(c.n_bad, 0) << bits;
    EXPECT_EQ(c.n_quantized, r.quantized.n_in) << bits;
    EXPECT_NEAR(c.sq_err / c.sq_ref, r.error.rel(), 1e-9) << bits;
    const HlwqFormat f = parse_hlwq_quantization_config(
        read_json_file((dst / "config.json").string())["quantization_config"], "config.json");
    EXPECT_EQ(f.bits, bits);
    EXPECT_EQ(f.codebook, lloyd_max_table(bits));
    EXPECT_EQ(f.scale_rule, "least-squares");
  }
}

TEST(QuantizeHlwq, MixedWidthsRoundTrip) {
  const fs::path dst = test::scratch_dir("hlwq_mixed") / "out";
  QuantizeOptions o = options(small_src(), dst, QuantFormat::hlwq, 4);
  o.hlwq_bits_for = {{".*\\.linear_attn\\.", 5}, {".*\\.mlp\\.experts\\.0\\.", 3}};
  const QuantizeReport r = quantize_model(o);
  const NativeCheck c = check_native(small_src(), dst, HlwqScale::least_squares);
  EXPECT_EQ(c.n_bad, 0);
  EXPECT_EQ(c.n_quantized, r.quantized.n_in);
  EXPECT_NEAR(c.sq_err / c.sq_ref, r.error.rel(), 1e-9);
  const HlwqFormat f = parse_hlwq_quantization_config(
      read_json_file((dst / "config.json").string())["quantization_config"], "config.json");
  ASSERT_EQ(f.overrides.size(), 2u);
  EXPECT_EQ(f.overrides[0].codebook, lloyd_max_table(5));
  EXPECT_EQ(f.overrides[1].codebook, lloyd_max_table(3));
  // the widths really differ per module, and bits/weight counts each at its own width
  Checkpoint out(dst.string());
  std::map<int, int64_t> weights;
  for (const std::string& n : out.names())
    if (n.ends_with(".hlwq_codes")) {
      const std::string m = n.substr(0, n.size() - 11);
      const int b = hlwq_resolve(f, m).bits;
      EXPECT_EQ(b, m.find(".linear_attn.") != std::string::npos ? 5 : m.find(".mlp.experts.0.") != std::string::npos ? 3 : 4) << m;
      const Shape s = out.entry(n).shape;
      EXPECT_EQ(s[1], hlwq_row_bytes(out.entry(hlwq_norms_name(m)).shape[1] * 128, b)) << m;
      weights[b] += s[0] * out.entry(hlwq_norms_name(m)).shape[1] * 128;
    }
  ASSERT_EQ(weights.size(), 3u);
  int64_t n = 0;
  double bits = 0;
  for (const auto& [b, k] : weights) {
    n += k;
    bits += double(k) * (b + 16.0 / 128);
  }
  EXPECT_EQ(r.hlwq_weights, n);  // the small model's inputs are multiples of 128: no padding
  EXPECT_NEAR(8.0 * double(r.hlwq_code_bytes) / double(r.hlwq_weights), bits / double(n), 1e-12);
}

TEST(QuantizeHlwq, BitsForIsChecked) {
  const fs::path dst = test::scratch_dir("hlwq_mixed_bad") / "out";
  for (const auto& [re, b] : std::vector<std::pair<std::string, int>>{
           {".*\\.linear_attn\\.", 9}, {".*\\.linear_attn\\.", 1}, {"(", 5}, {".*nothing_like_this", 5}}) {
    QuantizeOptions o = options(small_src(), dst, QuantFormat::hlwq, 4);
    o.hlwq_bits_for = {{re, b}};
    try {
      quantize_model(o);
      ADD_FAILURE() << re << "=" << b << " must be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--bits-for " + re + "=" + std::to_string(b)), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dst));
  }
  QuantizeOptions ct = options(small_src(), dst, QuantFormat::ct_int4);
  ct.hlwq_bits_for = {{".*", 5}};
  EXPECT_THROW(quantize_model(ct), Error);
}

TEST(QuantizeHlwq, OverridesAreValidated) {
  HlwqFormat f;
  f.bits = 4;
  f.codebook = lloyd_max_table(4);
  HlwqOverride o;
  o.targets = {"re:.*\\.linear_attn\\.", "model.layers.0.mlp.shared_expert.down_proj"};
  o.bits = 5;
  o.codebook = lloyd_max_table(5);
  f.overrides = {o};
  const nlohmann::json good = hlwq_quantization_config(f);
  EXPECT_EQ(good["version"], 2);
  const HlwqFormat g = parse_hlwq_quantization_config(good, "c");
  ASSERT_EQ(g.overrides.size(), 1u);
  EXPECT_EQ(g.overrides[0].targets, o.targets);
  EXPECT_EQ(g.overrides[0].codebook, o.codebook);
  EXPECT_EQ(hlwq_resolve(g, "model.layers.3.linear_attn.in_proj_qkv").bits, 5);
  EXPECT_EQ(hlwq_resolve(g, "model.layers.0.mlp.shared_expert.down_proj").bits, 5);
  EXPECT_EQ(hlwq_resolve(g, "model.layers.0.mlp.shared_expert.down_proj.x").bits, 4);  // a name matches exactly
  EXPECT_EQ(hlwq_resolve(g, "x.linear_attnXin").bits, 4);
  EXPECT_EQ(hlwq_resolve(g, "model.layers.3.self_attn.q_proj").bits, 4);
  EXPECT_EQ(hlwq_resolve(g, "model.layers.3.self_attn.q_proj").codebook, &g.codebook);
  auto expect_refused = [](const nlohmann::json& j, const std::string& says) {
    try {
      parse_hlwq_quantization_config(j, "c");
      ADD_FAILURE() << "must be refused: " << says;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  nlohmann::json j = good;
  j["overrides"][0]["codebook"]["values"].erase(0);  // 31 values for 5 bits
  expect_refused(j, "overrides[0].codebook: values must list 2^5 = 32 numbers");
  j = good;
  j["overrides"][0]["bits"] = 4;  // 32 values for 4 bits
  expect_refused(j, "overrides[0].codebook: values must list 2^4 = 16 numbers");
  j = good;
  j["overrides"][0]["bits"] = 9;
  expect_refused(j, "overrides[0]: bits 9 must be in [2, 8]");
  j = good;
  j["overrides"][0]["targets"] = {"re:(x"};
  expect_refused(j, "bad regular expression '(x'");
  j = good;
  j["overrides"][0]["targets"] = nlohmann::json::array();
  expect_refused(j, "targets must be a non-empty list");
  j = good;
  j["version"] = 1;  // overrides in a version 1 file: an old reader would misread it
  expect_refused(j, "version 1 must not have an 'overrides' list");
  j = good;
  j.erase("overrides");  // version 2 without overrides
  expect_refused(j, "version 2 needs an 'overrides' list");
  j = good;
  j["version"] = 3;
  expect_refused(j, "version 3 is not supported");
}

TEST(QuantizeHlwq, L2ScaleOptionAndItsError) {
  const fs::path root = test::scratch_dir("hlwq_l2");
  QuantizeOptions o = options(small_src(), root / "l2", QuantFormat::hlwq, 4);
  o.hlwq_scale = HlwqScale::l2_norm;
  const QuantizeReport l2 = quantize_model(o);
  EXPECT_EQ(check_native(small_src(), root / "l2", HlwqScale::l2_norm).n_bad, 0);
  const QuantizeReport ls = quantize_model(options(small_src(), root / "ls", QuantFormat::hlwq, 4));
  EXPECT_LT(ls.error.rel(), l2.error.rel());  // least squares minimizes each block's error for its codes
}

TEST(QuantizeHlwq, FlippedCodeOrderInTheFileIsDetected) {
  const fs::path dst = test::scratch_dir("hlwq_flip") / "out";
  quantize_model(options(small_src(), dst, QuantFormat::hlwq, 4));
  ASSERT_EQ(check_native(small_src(), dst, HlwqScale::least_squares).n_bad, 0);
  flip_code_order(dst);
  const NativeCheck c = check_native(small_src(), dst, HlwqScale::least_squares);
  EXPECT_EQ(c.n_bad, c.n_quantized);
}

TEST(QuantizeHlwq, ConfigBlockIsValidated) {
  HlwqFormat f;
  f.bits = 3;
  f.codebook = lloyd_max_table(3);
  const nlohmann::json good = hlwq_quantization_config(f);
  EXPECT_EQ(parse_hlwq_quantization_config(good, "c").codebook, f.codebook);  // values survive JSON exactly
  auto broken = [&](const char* key, nlohmann::json v) {
    nlohmann::json j = good;
    j[key] = std::move(v);
    return j;
  };
  EXPECT_THROW(parse_hlwq_quantization_config(broken("packing", "msb-first"), "c"), Error);
  EXPECT_THROW(parse_hlwq_quantization_config(broken("bits", 9), "c"), Error);
  EXPECT_THROW(parse_hlwq_quantization_config(broken("block_size", 64), "c"), Error);
  EXPECT_THROW(parse_hlwq_quantization_config(broken("version", 2), "c"), Error);
  nlohmann::json short_table = good;
  short_table["codebook"]["values"].erase(0);
  EXPECT_THROW(parse_hlwq_quantization_config(short_table, "c"), Error);
  nlohmann::json unsorted = good;
  std::swap(unsorted["codebook"]["values"][0], unsorted["codebook"]["values"][1]);
  EXPECT_THROW(parse_hlwq_quantization_config(unsorted, "c"), Error);
  // hf_config accepts the block and reports what it is
  const ModelConfig cfg = load_model_config(small_src().string());
  nlohmann::json raw = cfg.raw;
  raw["quantization_config"] = good;
  const ModelConfig q = parse_model_config(raw);
  ASSERT_TRUE(q.quant.has_value());
  EXPECT_EQ(q.quant->quant_method, "hlwq");
  EXPECT_EQ(q.quant->num_bits, 3);
}

TEST(QuantizeHlwq, SeedQ5LayoutRoundTrips) {
  const fs::path dst = test::scratch_dir("hlwq_q5_layout") / "q5";
  const QuantizeReport r = quantize_model(options(small_src(), dst, QuantFormat::hlwq_q5));
  ASSERT_TRUE(is_seed_q5_dir(dst.string()));
  EXPECT_FALSE(read_json_file((dst / "config.json").string()).contains("quantization_config"));
  Checkpoint src(small_src().string()), out(dst.string());
  const auto weights = seed_q5_weights(out);
  EXPECT_EQ(int64_t(weights.size()), r.quantized.n_in);
  const HlwqCodebook cb(seed_q5_table());
  for (const auto& [name, w] : weights) {
    ASSERT_TRUE(src.has(name)) << name;
    const std::vector<float> ref = to_f32(src.view(name));
    const HlwqCodes codes = hlwq_encode(ref.data(), w.out, w.in, cb, HlwqScale::l2_norm);
    // the seed's flat stream: all codes of the tensor, MSB-first (SPEC §4's byte formulas)
    const std::vector<uint8_t> want = hlwq_q5_pack(codes.codes);
    ASSERT_EQ(std::memcmp(w.packed, want.data(), want.size()), 0) << name;
    ASSERT_EQ(std::memcmp(w.norms, codes.scales.data(), codes.scales.size() * 2), 0) << name;
  }
}

TEST(QuantizeHlwq, SeedQ5ToCtEqualsTheSeedsCascade) {
  const fs::path root = test::scratch_dir("hlwq_q5_ct");
  quantize_model(options(small_src(), root / "q5", QuantFormat::hlwq_q5));
  const QuantizeReport r = quantize_model(options(root / "q5", root / "ct", QuantFormat::ct_int4));
  EXPECT_TRUE(r.from_seed_q5);
  QuantizeOptions casc = options(small_src(), root / "cascade", QuantFormat::ct_int4);
  casc.method = Int4Method::hlwq_cascade;
  quantize_model(casc);
  EXPECT_EQ(diff_checkpoints(root / "cascade", root / "ct"), "");
  EXPECT_EQ(read_json_file((root / "ct" / "config.json").string())["quantization_config"],
            read_json_file((root / "cascade" / "config.json").string())["quantization_config"]);
  // negative control: plain RTN of the bf16 original is not what the seed's checkpoint converts to
  quantize_model(options(small_src(), root / "rtn", QuantFormat::ct_int4));
  EXPECT_NE(diff_checkpoints(root / "rtn", root / "ct"), "");
}

TEST(QuantizeHlwq, SeedQ5SourceRefusesReQuantizing) {
  const fs::path root = test::scratch_dir("hlwq_q5_refuse");
  quantize_model(options(small_src(), root / "q5", QuantFormat::hlwq_q5));
  try {
    quantize_model(options(root / "q5", root / "x", QuantFormat::hlwq, 4));
    FAIL() << "re-encoding Q5 codes must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hlwq-q5"), std::string::npos) << e.what();
  }
  QuantizeOptions o = options(root / "q5", root / "y", QuantFormat::ct_int4);
  o.method = Int4Method::hlwq_cascade;
  EXPECT_THROW(quantize_model(o), Error);
  EXPECT_FALSE(fs::exists(root / "x"));
  EXPECT_FALSE(fs::exists(root / "y"));
}

namespace {

// A hand-made hlwq-q5 directory: the small model's config, one fused expert tensor (the seed codes a 3-D
// [E, 2I, H] tensor as [E·2I, H] rows) and whatever `extra` adds; returns the bf16 original of the fused tensor.
std::vector<float> write_fused_q5(const fs::path& dir, const std::vector<TensorSpec>& extra_specs = {}) {
  fs::create_directories(dir);
  fs::copy_file(small_src() / "config.json", dir / "config.json");
  std::ofstream(dir / kSeedQ5ConfigFile) << R"({"format": "hlwq-q5"})";
  const ModelConfig cfg = load_model_config(dir.string());
  const int64_t E = cfg.n_experts, I = cfg.moe_intermediate, H = cfg.hidden_size, rows = E * 2 * I;
  Checkpoint src(small_src().string());
  std::vector<float> w;  // [E, 2I, H]: expert e's gate rows then up rows, as upstream fuses them
  for (int64_t e = 0; e < E; ++e)
    for (const char* p : {"gate_proj", "up_proj"}) {
      const auto v = to_f32(src.view(fmt::format("model.language_model.layers.0.mlp.experts.{}.{}.weight", e, p)));
      w.insert(w.end(), v.begin(), v.end());
    }
  const HlwqCodes codes = hlwq_encode(w.data(), rows, H, HlwqCodebook(seed_q5_table()), HlwqScale::l2_norm);
  const std::vector<uint8_t> packed = hlwq_q5_pack(codes.codes);
  const std::string k = "model__language_model__layers__0__mlp__experts__gate_up_proj";
  const int64_t meta[4] = {rows, codes.n_blocks, 128, rows * codes.n_blocks * 128};
  std::vector<TensorSpec> specs = {{k + "__packed", DType::U8, {int64_t(packed.size())}},
                                   {k + "__norms", DType::F16, {rows, codes.n_blocks}},
                                   {k + "__meta", DType::I64, {4}}};
  specs.insert(specs.end(), extra_specs.begin(), extra_specs.end());
  CheckpointWriter wr(dir, specs, uint64_t(1) << 30);
  wr.write(k + "__packed", packed.data(), packed.size());
  wr.write(k + "__norms", codes.scales.data(), codes.scales.size() * 2);
  wr.write(k + "__meta", meta, sizeof meta);
  for (const auto& s : extra_specs) {
    std::vector<uint8_t> zeros(s.nbytes());
    wr.write(s.name, zeros.data(), zeros.size());
  }
  wr.finish();
  return w;
}

}  // namespace

TEST(QuantizeHlwq, SeedQ5FusedExpertsSplitPerExpert) {
  const fs::path root = test::scratch_dir("hlwq_q5_fused");
  const std::vector<float> w = write_fused_q5(root / "q5");
  quantize_model(options(root / "q5", root / "ct", QuantFormat::ct_int4));
  // expected: the seed's cascade of each expert's rows (decode Q5 → bf16 → RTN), from the independent codec
  const ModelConfig cfg = load_model_config((root / "q5").string());
  const int64_t I = cfg.moe_intermediate, H = cfg.hidden_size;
  const HlwqCodebook cb(seed_q5_table());
  Checkpoint out((root / "ct").string());
  for (int64_t e = 0; e < cfg.n_experts; ++e)
    for (int part = 0; part < 2; ++part) {
      const std::string m = fmt::format("model.language_model.layers.0.mlp.experts.{}.{}", e, part ? "up_proj" : "gate_proj");
      std::vector<float> d(size_t(I * H));
      for (int64_t r = 0; r < I; ++r)
        hlwq_roundtrip_row(w.data() + ((e * 2 + part) * I + r) * H, H, cb, HlwqScale::l2_norm, d.data() + r * H);
      for (float& x : d) x = bf16_to_f32(f32_to_bf16(x));
      const Int4Result want = quantize_int4(Int4Method::rtn, d.data(), I, H);
      const TensorView packed = out.view(m + ".weight_packed"), scale = out.view(m + ".weight_scale");
      ASSERT_EQ(std::memcmp(packed.data, want.packed.data(), want.packed.size() * 4), 0) << m;
      ASSERT_EQ(std::memcmp(scale.data, want.scale.data(), want.scale.size() * 2), 0) << m;
    }
}

TEST(QuantizeHlwq, SeedQ5BadInputIsRefusedByName) {
  const fs::path root = test::scratch_dir("hlwq_q5_bad");
  // a __packed without its __norms/__meta
  write_fused_q5(root / "a", {{"model__x__weight__packed", DType::U8, {80}}});
  try {
    quantize_model(options(root / "a", root / "a_out", QuantFormat::ct_int4));
    FAIL() << "a lone __packed must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model__x__weight__norms"), std::string::npos) << e.what();
  }
  // meta that disagrees with the packed size
  write_fused_q5(root / "b", {{"model__x__weight__packed", DType::U8, {80}},
                              {"model__x__weight__norms", DType::F16, {1, 1}},
                              {"model__x__weight__meta", DType::I64, {4}}});  // all zeros: out = 0
  try {
    quantize_model(options(root / "b", root / "b_out", QuantFormat::ct_int4));
    FAIL() << "a zero meta must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model__x__weight__meta"), std::string::npos) << e.what();
  }
  // another polar_config format
  write_fused_q5(root / "c");
  std::ofstream(root / "c" / kSeedQ5ConfigFile) << R"({"format": "hlwq-q4"})";
  EXPECT_THROW(quantize_model(options(root / "c", root / "c_out", QuantFormat::ct_int4)), Error);
  for (const char* d : {"a_out", "b_out", "c_out"}) EXPECT_FALSE(fs::exists(root / d));
}

TEST(QuantizeHlwq, DecodedCheckpointHoldsTheExactDecode) {
  const fs::path root = test::scratch_dir("hlwq_decoded");
  quantize_model(options(small_src(), root / "hlwq", QuantFormat::hlwq, 3));
  write_hlwq_decoded((root / "hlwq").string(), (root / "dec").string());
  const HlwqFormat f = parse_hlwq_quantization_config(
      read_json_file((root / "hlwq" / "config.json").string())["quantization_config"], "config.json");
  Checkpoint q((root / "hlwq").string()), d((root / "dec").string());
  EXPECT_FALSE(load_model_config((root / "dec").string()).quant.has_value());
  int n = 0;
  for (const std::string& name : d.names()) {
    const std::string m = name.substr(0, name.size() - 7);
    if (!hlwq_has_native(q, m)) {
      ASSERT_TRUE(q.has(name)) << name;  // copied as is
      continue;
    }
    const TensorView t = d.view(name);
    ASSERT_EQ(t.dtype, DType::F32);
    const HlwqMatrixView v = hlwq_native_view(q, m, t.shape[0], t.shape[1], f);
    std::vector<float> row(static_cast<size_t>(t.shape[1]));
    for (int64_t r = 0; r < t.shape[0]; ++r) {
      hlwq_decode_row(v, r, row.data());
      ASSERT_EQ(std::memcmp(static_cast<const float*>(t.data) + r * t.shape[1], row.data(), row.size() * 4), 0) << name;
    }
    ++n;
  }
  EXPECT_GT(n, 100);
  // the seed's fused 3-D tensor keeps its shape
  write_fused_q5(root / "q5");
  write_hlwq_decoded((root / "q5").string(), (root / "q5dec").string());
  const ModelConfig cfg = load_model_config((root / "q5").string());
  EXPECT_EQ(Checkpoint((root / "q5dec").string()).entry("model.language_model.layers.0.mlp.experts.gate_up_proj").shape,
            Shape({cfg.n_experts, 2 * cfg.moe_intermediate, cfg.hidden_size}));
  EXPECT_FALSE(fs::exists(root / "q5dec" / kSeedQ5ConfigFile));
}
