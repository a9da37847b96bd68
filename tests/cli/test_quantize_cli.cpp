// `hlwq quantize` on bad input: one clear error line, exit code 1, and no DST (nor a stage) left behind.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "io/safetensors.h"
#include "test_paths.h"

using hlwq::test::run_hlwq;
namespace fs = std::filesystem;

namespace {

// A writable copy of the small bf16 fixture to corrupt.
fs::path copy_small(const std::string& test) {
  fs::path src = hlwq::test::source_dir() / "testdata" / "tiny-random-small-bf16";
  if (!fs::exists(src)) src = hlwq::test::shared_dir() / "fixtures" / "tiny-random-small-bf16";
  const fs::path dir = hlwq::test::scratch_dir(test) / "src";
  fs::copy(src, dir, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(dir))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dir;
}

// Runs quantize SRC DST and checks the failure contract.
void expect_quantize_fails(const fs::path& src, const std::string& needle, const std::string& extra = "",
                           const std::string& prefix = "") {
  const fs::path dst = src.parent_path() / "dst";
  auto r = run_hlwq("quantize -q " + src.string() + " " + dst.string() + " " + extra, prefix);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("hlwq: error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "want '" << needle << "' in: " << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line expected: " << r.out;
  for (const auto& e : fs::directory_iterator(src.parent_path()))
    EXPECT_TRUE(e.path().filename() == "src" || (fs::exists(dst) && e.path() == dst))
        << "left behind: " << e.path();
}

void overwrite(const fs::path& p, size_t offset, const std::string& bytes) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(std::streamoff(offset));
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

const char* kShard1 = "model-00001-of-00003.safetensors";

}  // namespace

TEST(QuantizeCli, MissingConfig) {
  fs::path src = copy_small("qc_noconfig");
  fs::remove(src / "config.json");
  expect_quantize_fails(src, "missing config.json");
}

TEST(QuantizeCli, GarbageConfig) {
  fs::path src = copy_small("qc_garbage");
  std::ofstream(src / "config.json") << "{\"model_type\": qwen";
  expect_quantize_fails(src, "config.json: not valid JSON");
}

TEST(QuantizeCli, UnsupportedArchitecture) {
  fs::path src = copy_small("qc_arch");
  std::ofstream(src / "config.json") << R"({"model_type": "llama", "hidden_size": 128})";
  expect_quantize_fails(src, "model_type 'llama' is not supported");
}

TEST(QuantizeCli, TruncatedShard) {
  fs::path src = copy_small("qc_trunc");
  fs::resize_file(src / kShard1, fs::file_size(src / kShard1) - 100);
  expect_quantize_fails(src, "run past the data buffer");
}

TEST(QuantizeCli, HeaderLengthBeyondFile) {
  fs::path src = copy_small("qc_hlen");
  overwrite(src / kShard1, 0, std::string("\xff\xff\xff\x00\x00\x00\x00\x00", 8));
  expect_quantize_fails(src, "header length");
}

TEST(QuantizeCli, OffsetsOverlapping) {
  // Rewrite the first tensor's end offset inside the header so it overlaps the next one (same digit count).
  fs::path src = copy_small("qc_overlap");
  std::string bytes;
  {
    std::ifstream f(src / kShard1, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  const size_t pos = bytes.find("\"data_offsets\":[0,");
  ASSERT_NE(pos, std::string::npos);
  const size_t num = pos + std::string("\"data_offsets\":[0,").size();
  bytes[num] = bytes[num] == '9' ? '8' : char(bytes[num] + 1);  // end offset grows or shrinks: not tiled
  std::ofstream(src / kShard1, std::ios::binary) << bytes;
  expect_quantize_fails(src, kShard1);
}

TEST(QuantizeCli, DtypeShapeSizeMismatch) {
  fs::path src = copy_small("qc_dtype");
  std::string bytes;
  {
    std::ifstream f(src / kShard1, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  const size_t pos = bytes.find("\"BF16\"");
  ASSERT_NE(pos, std::string::npos);
  bytes.replace(pos, 6, "\"F32\" ");  // same length, 4-byte elements: sizes no longer match
  std::ofstream(src / kShard1, std::ios::binary) << bytes;
  expect_quantize_fails(src, "needs");
}

TEST(QuantizeCli, NonFiniteWeightNamesTheTensor) {
  fs::path src = copy_small("qc_nan");
  const std::string name = "model.language_model.layers.0.linear_attn.in_proj_z.weight";
  uint64_t at = 0;
  {
    hlwq::SafetensorsFile f((src / kShard1).string());
    const hlwq::TensorEntry* e = f.find(name);
    ASSERT_NE(e, nullptr);
    uint64_t hlen = 0;
    std::ifstream in(src / kShard1, std::ios::binary);
    in.read(reinterpret_cast<char*>(&hlen), 8);
    at = 8 + hlen + e->begin + 2 * 37;  // element 37 of the tensor
  }
  overwrite(src / kShard1, at, std::string("\xc0\x7f", 2));  // bf16 NaN
  expect_quantize_fails(src, "tensor " + name + ": ");
}

TEST(QuantizeCli, MissingShard) {
  fs::path src = copy_small("qc_shard");
  fs::remove(src / "model-00002-of-00003.safetensors");
  expect_quantize_fails(src, "shard 'model-00002-of-00003.safetensors' named in model.safetensors.index.json is missing");
}

// Rewrites one tensor's header entry of a shard (issue 11: expert tensors of the wrong dtype or rank "succeeded").
// The data is left as it is: only the header changes, re-padded to a multiple of 8 bytes.
static void edit_header_entry(const fs::path& shard, const std::string& name, const nlohmann::json& dtype_and_shape) {
  std::string bytes;
  {
    std::ifstream f(shard, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, hlen));
  ASSERT_TRUE(h.contains(name)) << name;
  h[name].update(dtype_and_shape);
  std::string out = h.dump();
  out.append((8 - out.size() % 8) % 8, ' ');
  const uint64_t n = out.size();
  std::ofstream f(shard, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << out << bytes.substr(8 + hlen);
}

TEST(QuantizeCli, ExpertTensorOfWrongDtypeOrRankIsRefused) {
  const std::string name = "model.language_model.layers.0.mlp.experts.0.down_proj.weight";  // BF16 [128, 128]
  {
    fs::path src = copy_small("qc_expert_dtype");
    edit_header_entry(src / kShard1, name, {{"dtype", "I16"}});  // same size, not floating point
    expect_quantize_fails(src, "tensor " + name + " must be floating point, got I16");
  }
  {
    fs::path src = copy_small("qc_expert_rank");
    edit_header_entry(src / kShard1, name, {{"shape", {128 * 128}}});  // same size, one dimension
    expect_quantize_fails(src, "tensor " + name + " must have 2 dimensions, got [16384]");
  }
}

TEST(QuantizeCli, WrongExpertShapeForConfig) {
  fs::path src = copy_small("qc_shape");
  std::string cfg;
  {
    std::ifstream f(src / "config.json");
    cfg.assign(std::istreambuf_iterator<char>(f), {});
  }
  const size_t pos = cfg.find("\"moe_intermediate_size\": 128");
  ASSERT_NE(pos, std::string::npos);
  cfg.replace(pos, 28, "\"moe_intermediate_size\": 256");
  std::ofstream(src / "config.json") << cfg;
  expect_quantize_fails(src, "expected [128, 256] for model.language_model.layers.0.mlp.experts.0.down_proj.weight (from config.json), got [128, 128]");
}

TEST(QuantizeCli, DstExistsWithoutForce) {
  fs::path src = copy_small("qc_exists");
  const fs::path dst = src.parent_path() / "dst";
  fs::create_directories(dst);
  std::ofstream(dst / "keep.txt") << "precious";
  expect_quantize_fails(src, "already exists (pass --force");
  EXPECT_TRUE(fs::exists(dst / "keep.txt"));
  // --force does not delete a directory hlwq did not write, even one that looks like a model (a project with
  // a config.json and a .git used to be wiped)...
  std::ofstream(dst / "config.json") << "{}";
  fs::create_directories(dst / ".git");
  expect_quantize_fails(src, "was not written by hlwq", "--force");
  EXPECT_TRUE(fs::exists(dst / "keep.txt"));
  EXPECT_TRUE(fs::exists(dst / ".git"));
  // ...but replaces hlwq's own previous output (it carries the marker file).
  fs::remove_all(dst);
  auto r = run_hlwq("quantize -q " + src.string() + " " + dst.string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  ASSERT_TRUE(fs::exists(dst / ".hlwq-output"));
  std::ofstream(dst / "stale.txt") << "from the previous run";
  r = run_hlwq("quantize -q --force " + src.string() + " " + dst.string());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_FALSE(fs::exists(dst / "stale.txt"));
  EXPECT_TRUE(fs::exists(dst / "config.json"));
  for (const auto& e : fs::directory_iterator(src.parent_path()))
    EXPECT_TRUE(e.path().filename() == "src" || e.path() == dst) << "left behind: " << e.path();
}

// Issue 11: `quantize M /` looped forever; a FIFO in the model directory blocked forever; --threads 100000
// crashed in libgomp. Each now returns promptly (an error, or a warning and a capped thread count).
TEST(QuantizeCli, RootOutputFifoAndHugeThreadCount) {
  fs::path src = copy_small("qc_hostile_paths");
  auto r = run_hlwq("quantize -q " + src.string() + " /", "ulimit -t 20;");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("must name a directory"), std::string::npos) << r.out;
  const fs::path dst = src.parent_path() / "dst";
  // the command line refuses it before anything runs (exit 2: usage), naming the allowed range
  r = run_hlwq("quantize -q --threads 100000 " + src.string() + " " + dst.string());
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--threads: got 100000"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dst));
  fs::remove_all(dst);
  fs::remove(src / "generation_config.json");
  ASSERT_EQ(::mkfifo((src / "generation_config.json").c_str(), 0600), 0);
  expect_quantize_fails(src, "is a FIFO", "", "ulimit -t 20;");
}

// A checkpoint incomplete against its config or index is refused before anything is written, as are NaN/Inf in
// tensors that are kept as stored (norms here).
TEST(QuantizeCli, IncompleteOrNonFiniteCheckpointsAreRefused) {
  {
    fs::path src = copy_small("qc_incomplete_layer");
    std::string cfg;
    {
      std::ifstream f(src / "config.json");
      cfg.assign(std::istreambuf_iterator<char>(f), {});
    }
    // One layer more than the checkpoint holds.
    const size_t pos = cfg.find("\"num_hidden_layers\": ");
    ASSERT_NE(pos, std::string::npos);
    const size_t end = cfg.find_first_of(",\n}", pos);
    const int layers = std::stoi(cfg.substr(pos + 21, end - pos - 21));
    cfg.replace(pos, end - pos, "\"num_hidden_layers\": " + std::to_string(layers + 1));
    const size_t lt = cfg.find("\"layer_types\"");
    if (lt != std::string::npos) cfg.replace(cfg.find('[', lt), 1, "[\"linear_attention\", ");
    std::ofstream(src / "config.json") << cfg;
    expect_quantize_fails(src, "missing tensor");
  }
  {
    fs::path src = copy_small("qc_kept_nan");
    const std::string name = "model.language_model.norm.weight";
    uint64_t at = 0;
    std::string shard;
    for (const auto& e : fs::directory_iterator(src)) {
      if (e.path().extension() != ".safetensors") continue;
      hlwq::SafetensorsFile f(e.path().string());
      if (const hlwq::TensorEntry* t = f.find(name)) {
        uint64_t hlen = 0;
        std::ifstream in(e.path(), std::ios::binary);
        in.read(reinterpret_cast<char*>(&hlen), 8);
        at = 8 + hlen + t->begin + 2 * 5;
        shard = e.path().filename().string();
      }
    }
    ASSERT_FALSE(shard.empty());
    overwrite(src / shard, at, std::string("\x80\x7f", 2));  // bf16 +Inf
    expect_quantize_fails(src, "tensor " + name + ": non-finite value (NaN or Inf) at element 5");
  }
}

// `quantize SRC SRC --force` or `quantize SRC <parent of SRC> --force` would delete the input at commit: both
// are refused up front, and SRC is left intact.
TEST(QuantizeCli, ForceNeverReplacesTheSourceOrItsParent) {
  fs::path src = copy_small("qc_self");
  std::vector<std::string> before;
  for (const auto& e : fs::directory_iterator(src)) before.push_back(e.path().filename().string());
  std::sort(before.begin(), before.end());
  for (const fs::path& dst : {src, src.parent_path(), src / ".." / "src" / ""}) {
    auto r = run_hlwq("quantize -q --force " + src.string() + " " + dst.string());
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("or a directory containing it; refusing"), std::string::npos) << r.out;
    std::vector<std::string> after;
    for (const auto& e : fs::directory_iterator(src)) after.push_back(e.path().filename().string());
    std::sort(after.begin(), after.end());
    EXPECT_EQ(after, before) << dst;
  }
  for (const auto& e : fs::directory_iterator(src.parent_path()))
    EXPECT_EQ(e.path().filename(), "src") << "left behind: " << e.path();
  hlwq::Checkpoint ck(src.string());  // still opens
  EXPECT_FALSE(ck.names().empty());
}

TEST(QuantizeCli, WriteFailureLeavesNothing) {
  // A 64 KiB file-size limit makes the output writes fail like a full disk does.
  fs::path src = copy_small("qc_full");
  expect_quantize_fails(src, "cannot reserve", "", "ulimit -f 64;");
}

TEST(QuantizeCli, UnknownMethodAndFormat) {
  fs::path src = copy_small("qc_method");
  // A wrong option value is a command-line error: exit code 2, one line, nothing created.
  auto m = run_hlwq("quantize -q " + src.string() + " " + (src.parent_path() / "dst").string() + " --method gptq-magic");
  EXPECT_EQ(m.exit_code, 2) << m.out;
  EXPECT_EQ(m.out.rfind("hlwq: error: --method: ", 0), 0u) << m.out;
  EXPECT_NE(m.out.find("unknown"), std::string::npos) << m.out;
  EXPECT_FALSE(fs::exists(src.parent_path() / "dst"));
  auto r = run_hlwq("quantize " + src.string() + " /tmp/never --format gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(fs::exists("/tmp/never"));
}

TEST(QuantizeCli, SummaryOnDemoModel) {
  const fs::path dst = hlwq::test::scratch_dir("qc_demo") / "out";
  auto r = run_hlwq("quantize -q " + (hlwq::test::source_dir() / "models/tiny-moe-dev").string() + " " +
                    dst.string() + " --method mse --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* s : {"routed experts", "= quantized to int4", "rel. MSE", "peak RSS", "GB/s"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in " << r.out;
  EXPECT_TRUE(fs::exists(dst / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(dst / "tokenizer_config.json"));
}
