// `hlwq quantize --format hlwq` options: --bits 2..8 each write codes of that width (config and tensor shapes say
// so), 1 and 9 are refused with one line naming the option and the range, --hlwq-scale ls / l2 is recorded and
// changes the norms, and the options are refused with another --format instead of being silently ignored;
// --bits-for REGEX=B writes mixed widths (overrides, version 2) and refuses bad B, bad or unmatched REGEX.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "test_paths.h"

using hlwq::test::run_hlwq;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path small() {
  const fs::path in_repo = hlwq::test::source_dir() / "testdata" / "tiny-random-small-bf16";
  return fs::exists(in_repo) ? in_repo : hlwq::test::shared_dir() / "fixtures" / "tiny-random-small-bf16";
}

json read_json(const fs::path& p) { return json::parse(std::ifstream(p)); }

// The header of every safetensors file in dir, merged (tensor name → {dtype, shape, data_offsets}).
json tensors(const fs::path& dir) {
  json all = json::object();
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    std::ifstream f(e.path(), std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    f.read(h.data(), std::streamsize(n));
    const json j = json::parse(h);
    for (auto& [k, v] : j.items())
      if (k != "__metadata__") all[k] = v;
  }
  return all;
}

// The bytes of tensor `name` in the single-shard checkpoint at dir.
std::vector<uint8_t> tensor_bytes(const fs::path& dir, const std::string& name) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    std::ifstream f(e.path(), std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    f.read(h.data(), std::streamsize(n));
    const json j = json::parse(h);
    if (!j.contains(name)) continue;
    const uint64_t a = j[name]["data_offsets"][0], b = j[name]["data_offsets"][1];
    std::vector<uint8_t> bytes(b - a);
    f.seekg(std::streamoff(8 + n + a));
    f.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
    return bytes;
  }
  ADD_FAILURE() << name << " not in " << dir;
  return {};
}

}  // namespace

TEST(QuantizeHlwqCli, EveryWidthFromTwoToEight) {
  const fs::path root = hlwq::test::scratch_dir("qh_bits");
  for (int bits = 2; bits <= 8; ++bits) {
    SCOPED_TRACE(bits);
    const fs::path dst = root / ("b" + std::to_string(bits));
    auto r = run_hlwq("quantize -q " + small().string() + " " + dst.string() + " --format hlwq --bits " +
                      std::to_string(bits));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const json q = read_json(dst / "config.json")["quantization_config"];
    EXPECT_EQ(q["format"], "hlwq-native");
    EXPECT_EQ(q["bits"], bits);
    EXPECT_EQ(q["codebook"]["values"].size(), size_t(1) << bits);
    EXPECT_EQ(q["scale_rule"], "least-squares");  // the default
    int n_codes = 0;
    const json all = tensors(dst);
    for (auto& [name, t] : all.items()) {
      if (!name.ends_with(".hlwq_codes")) continue;
      ++n_codes;
      const std::string base = name.substr(0, name.size() - std::strlen(".hlwq_codes"));
      ASSERT_TRUE(all.contains(base + ".hlwq_norms")) << name;
      const json& norms = all[base + ".hlwq_norms"];
      // codes [out, nb · 16 · bits] U8 beside norms [out, nb] F16 (docs/hlwq-format.md)
      EXPECT_EQ(t["dtype"], "U8") << name;
      EXPECT_EQ(t["shape"][0], norms["shape"][0]) << name;
      EXPECT_EQ(int64_t(t["shape"][1]), int64_t(norms["shape"][1]) * 16 * bits) << name;
      if (n_codes > 3) break;
    }
    EXPECT_GT(n_codes, 0);
  }
}

TEST(QuantizeHlwqCli, WidthsOutsideTwoToEightAreRefused) {
  const fs::path root = hlwq::test::scratch_dir("qh_badbits");
  for (const char* bits : {"1", "9", "0", "-4", "four"}) {
    SCOPED_TRACE(bits);
    const fs::path dst = root / "dst";
    auto r = run_hlwq("quantize -q " + small().string() + " " + dst.string() + " --format hlwq --bits " + bits);
    EXPECT_EQ(r.exit_code, 2) << r.out;  // a command-line error
    EXPECT_EQ(r.out.rfind("hlwq: error: --bits: ", 0), 0u) << r.out;
    if (std::string(bits) == "1" || std::string(bits) == "9") {
      EXPECT_NE(r.out.find("not in range 2 to 8"), std::string::npos) << r.out;
    }
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line expected: " << r.out;
    EXPECT_FALSE(fs::exists(dst));
  }
}

TEST(QuantizeHlwqCli, ScaleRuleIsRecordedAndUsed) {
  const fs::path root = hlwq::test::scratch_dir("qh_scale");
  std::vector<uint8_t> norms[2];
  int i = 0;
  for (const char* s : {"ls", "l2"}) {
    const fs::path dst = root / s;
    auto r = run_hlwq("quantize -q " + small().string() + " " + dst.string() + " --format hlwq --bits 4 --hlwq-scale " +
                      s);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(read_json(dst / "config.json")["quantization_config"]["scale_rule"],
              std::string(s) == "l2" ? "l2-norm" : "least-squares");
    const json t = tensors(dst);
    const auto it = std::find_if(t.items().begin(), t.items().end(),
                                 [](const auto& kv) { return kv.key().ends_with(".hlwq_norms"); });
    ASSERT_NE(it, t.items().end());
    norms[i++] = tensor_bytes(dst, it.key());
  }
  EXPECT_NE(norms[0], norms[1]) << "least-squares and l2 norms should differ";
  auto bad = run_hlwq("quantize -q " + small().string() + " " + (root / "bad").string() +
                      " --format hlwq --hlwq-scale max");
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_EQ(bad.out.rfind("hlwq: error: --hlwq-scale: ", 0), 0u) << bad.out;
  EXPECT_FALSE(fs::exists(root / "bad"));
}

TEST(QuantizeHlwqCli, HlwqOptionsNeedTheHlwqFormat) {
  const fs::path root = hlwq::test::scratch_dir("qh_format");
  for (const char* extra : {"--format ct-int4 --bits 3", "--bits 5", "--format hlwq-q5 --hlwq-scale ls"}) {
    SCOPED_TRACE(extra);
    auto r = run_hlwq("quantize -q " + small().string() + " " + (root / "dst").string() + " " + extra);
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("applies to --format hlwq only"), std::string::npos) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line expected: " << r.out;
    EXPECT_FALSE(fs::exists(root / "dst"));
  }
}

TEST(QuantizeHlwqCli, BitsForGivesMatchingModulesTheirWidth) {
  const fs::path dst = hlwq::test::scratch_dir("qh_bitsfor") / "dst";
  auto r = run_hlwq("quantize " + small().string() + " " + dst.string() +
                    " --format hlwq --bits 4 --bits-for '.*\\.linear_attn\\.=5' --bits-for '.*\\.self_attn\\.o_proj$=3'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("bits/weight of the quantized linears: "), std::string::npos) << r.out;
  const json q = read_json(dst / "config.json")["quantization_config"];
  EXPECT_EQ(q["version"], 2);  // overrides change row lengths: readers without them must refuse the file
  ASSERT_EQ(q["overrides"].size(), 2u);
  EXPECT_EQ(q["overrides"][0]["targets"][0], "re:.*\\.linear_attn\\.");
  EXPECT_EQ(q["overrides"][0]["bits"], 5);
  EXPECT_EQ(q["overrides"][0]["codebook"]["values"].size(), 32u);
  EXPECT_EQ(q["overrides"][1]["bits"], 3);
  int seen[9] = {};
  const json all = tensors(dst);
  for (auto& [name, t] : all.items()) {
    if (!name.ends_with(".hlwq_codes")) continue;
    const std::string base = name.substr(0, name.size() - std::strlen(".hlwq_codes"));
    const int want = base.find(".linear_attn.") != std::string::npos ? 5 : base.ends_with(".self_attn.o_proj") ? 3 : 4;
    const int64_t nb = all[base + ".hlwq_norms"]["shape"][1];
    EXPECT_EQ(int64_t(t["shape"][1]), nb * 16 * want) << name;
    ++seen[want];
  }
  EXPECT_GT(seen[3], 0);
  EXPECT_GT(seen[4], 0);
  EXPECT_GT(seen[5], 0);
  // without overrides the file stays version 1
  const fs::path plain = hlwq::test::scratch_dir("qh_bitsfor") / "plain";
  ASSERT_EQ(run_hlwq("quantize -q " + small().string() + " " + plain.string() + " --format hlwq --bits 4").exit_code, 0);
  EXPECT_EQ(read_json(plain / "config.json")["quantization_config"]["version"], 1);
  EXPECT_FALSE(read_json(plain / "config.json")["quantization_config"].contains("overrides"));
}

TEST(QuantizeHlwqCli, BadBitsForIsRefused) {
  const fs::path root = hlwq::test::scratch_dir("qh_bitsfor_bad");
  const struct {
    const char* arg;
    int exit_code;
    const char* says;
  } cases[] = {
      {"'.*\\.linear_attn\\.=9'", 2, "B must be an integer in [2, 8], got '9'"},
      {"'.*\\.linear_attn\\.=1'", 2, "B must be an integer in [2, 8], got '1'"},
      {"'.*\\.linear_attn\\.=five'", 2, "B must be an integer in [2, 8], got 'five'"},
      {"'.*\\.linear_attn\\.'", 2, "expected REGEX=B"},
      {"'=5'", 2, "expected REGEX=B"},
      {"'(linear_attn=5'", 2, "bad regular expression '(linear_attn'"},
      {"'.*\\.no_such_module=5'", 1, "matches no quantized module"},
      {"'.*\\.in_proj_a$=5'", 1, "matches no quantized module"},  // kept unquantized: nothing to widen
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.arg);
    auto r = run_hlwq("quantize -q " + small().string() + " " + (root / "dst").string() + " --format hlwq --bits-for " +
                      c.arg);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--bits-for"), std::string::npos) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line expected: " << r.out;
    EXPECT_FALSE(fs::exists(root / "dst"));
  }
  auto ct = run_hlwq("quantize -q " + small().string() + " " + (root / "dst").string() + " --bits-for '.*=5'");
  EXPECT_EQ(ct.exit_code, 2) << ct.out;
  EXPECT_NE(ct.out.find("applies to --format hlwq only"), std::string::npos) << ct.out;
}
