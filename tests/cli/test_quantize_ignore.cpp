// `hlwq quantize --ignore REGEX`: the Linears a pattern names stay in the source dtype with the rest of their
// vLLM fusion group, are listed by name in quantization_config.ignore, and load and run; a pattern that names no
// Linear to quantize, or does not parse, is refused before anything is written. `inspect` counts them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "io/read_file.h"
#include "io/safetensors.h"
#include "test_paths.h"

using namespace hlwq;
using hlwq::test::run_hlwq;
namespace fs = std::filesystem;

namespace {

fs::path demo() { return hlwq::test::source_dir() / "models" / "tiny-moe-dev"; }

std::vector<std::string> ignore_list(const fs::path& dir) {
  return read_json_file((dir / "config.json").string())["quantization_config"]["ignore"].get<std::vector<std::string>>();
}

bool listed(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST(QuantizeIgnore, KeepsTheNamedLinearsAndTheirFusionGroup) {
  const fs::path dst = hlwq::test::scratch_dir("qi_group") / "dst";
  // names in_proj_qkv of layer 0 only: its fusion partner in_proj_z (vLLM's in_proj_qkvz) is kept with it
  auto r = run_hlwq("quantize " + demo().string() + " " + dst.string() +
                    " --ignore 'model\\.layers\\.0\\.linear_attn\\.in_proj_qkv'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("--ignore kept 2 Linears in the source dtype"), std::string::npos) << r.out;
  Checkpoint src(demo().string()), out(dst.string());
  for (const char* p : {"in_proj_qkv", "in_proj_z"}) {
    const std::string w = std::string("model.layers.0.linear_attn.") + p + ".weight";
    SCOPED_TRACE(w);
    ASSERT_TRUE(out.has(w));
    EXPECT_FALSE(out.has(std::string("model.layers.0.linear_attn.") + p + ".weight_packed"));
    const TensorView a = src.view(w), b = out.view(w);
    ASSERT_EQ(a.dtype, b.dtype);
    ASSERT_EQ(a.shape, b.shape);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes()), 0);  // unchanged bytes
  }
  // the layer's out_proj and the next layer's projections are quantized as usual
  EXPECT_TRUE(out.has("model.layers.0.linear_attn.out_proj.weight_packed"));
  EXPECT_TRUE(out.has("model.layers.1.linear_attn.in_proj_qkv.weight_packed"));
  const auto ignore = ignore_list(dst);
  EXPECT_TRUE(listed(ignore, "model.layers.0.linear_attn.in_proj_qkv"));
  EXPECT_TRUE(listed(ignore, "model.layers.0.linear_attn.in_proj_z"));
  EXPECT_FALSE(listed(ignore, "model.layers.0.linear_attn.out_proj"));
  // the seed's fixed entries stay first, unchanged
  EXPECT_EQ(ignore.front(), "lm_head");
  // inspect says how many Linears the file keeps unquantized
  const auto inspect = run_hlwq("inspect " + dst.string());
  ASSERT_EQ(inspect.exit_code, 0) << inspect.out;
  EXPECT_NE(inspect.out.find("; 2 Linears kept unquantized by name"), std::string::npos) << inspect.out;
}

TEST(QuantizeIgnore, OneExpertNamedKeepsTheLayersExperts) {
  // vLLM runs a layer's experts as one fused MoE of one scheme: naming one expert keeps them all
  const fs::path dst = hlwq::test::scratch_dir("qi_experts") / "dst";
  auto r = run_hlwq("quantize -q " + demo().string() + " " + dst.string() +
                    " --ignore 'model\\.layers\\.1\\.mlp\\.experts\\.3\\.down_proj'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  Checkpoint out(dst.string());
  const auto ignore = ignore_list(dst);
  int64_t kept = 0;
  for (const auto& n : out.names()) {
    if (n.rfind("model.layers.1.mlp.experts.", 0) == 0) {
      EXPECT_TRUE(n.ends_with(".weight")) << n;
      kept += listed(ignore, n.substr(0, n.size() - std::strlen(".weight")));
    }
    if (n.rfind("model.layers.0.mlp.experts.", 0) == 0) {
      EXPECT_FALSE(n.ends_with(".weight")) << n;
    }
  }
  const int64_t E = read_json_file((demo() / "config.json").string())["num_experts"].get<int64_t>();
  EXPECT_EQ(kept, 3 * E);
}

TEST(QuantizeIgnore, KeptMixersLoadAndStayCloserToBf16) {
  // The demo model with every Gated DeltaNet projection kept in bf16 loads on the engine and is closer to the bf16
  // model than the same method with them quantized (QUALITY.md: they carry most of the INT4 error).
  const fs::path root = hlwq::test::scratch_dir("qi_kld");
  const fs::path text = root / "t.txt";
  {
    std::ofstream f(text);
    for (int i = 0; i < 60; ++i)
      f << "The interpreter reads a line of input, compiles it to bytecode and runs it; step " << i << ".\n\n";
  }
  double kld[2];
  int i = 0;
  for (const char* extra : {"", " --ignore '.*\\.linear_attn\\.'"}) {
    const fs::path q = root / (i == 0 ? "plain" : "kept");
    ASSERT_EQ(run_hlwq("quantize -q " + demo().string() + " " + q.string() + " --method rtn" + extra).exit_code, 0);
    auto r = run_hlwq("eval kld " + q.string() + " --base " + demo().string() + " --text " + text.string() +
                      " --ctx 64 --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    kld[i++] = nlohmann::json::parse(r.out)["kld"].get<double>();
  }
  EXPECT_GT(kld[0], 0.0);
  EXPECT_LT(kld[1], kld[0]);
}

TEST(QuantizeIgnore, PatternsThatNameNothingOrDoNotParseAreRefused) {
  const fs::path root = hlwq::test::scratch_dir("qi_bad");
  const struct {
    const char* arg;
    int exit_code;
    const char* says;
  } cases[] = {
      {"'.*\\.no_such_module'", 1, "names no Linear of"},
      {"'.*\\.in_proj_a$'", 1, "names no Linear of"},           // keep-listed anyway: nothing to keep
      {"'layers\\.0\\.'", 1, "names no Linear of"},             // matched from the start of the name
      {"'(linear_attn'", 2, "--ignore '(linear_attn': bad regular expression"},
      {"'.*\\.linear_attn\\.' --format hlwq-q5", 2, "--ignore applies to --format ct-int4 and hlwq"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.arg);
    auto r = run_hlwq("quantize -q " + demo().string() + " " + (root / "dst").string() + " --ignore " + c.arg);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(root / "dst"));
  }
}
