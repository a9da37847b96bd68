// Hostile model directories (issue 11): files that are not regular (FIFOs, devices), oversized or deeply nested
// JSON, configs with zero, negative or absurd dimensions, indexes that do not cover their shards, absurdly long
// tensor names, and a shard truncated while mapped. Each must give one clear hlwq::Error (or, for SIGBUS, a
// clear message and exit status 3), never a hang, crash or silent acceptance.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/compressed_tensors.h"
#include "io/hf_config.h"
#include "io/read_file.h"
#include "io/safetensors.h"
#include "st_craft.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_ERROR_HAS(stmt, needle)                       \
  do {                                                       \
    std::string msg_ = error_of([&] { stmt; });              \
    EXPECT_NE(msg_.find(needle), std::string::npos) << msg_; \
  } while (0)

fs::path demo() { return test::source_dir() / "models" / "tiny-moe-dev"; }

nlohmann::json demo_config() { return read_json_file(demo() / "config.json"); }

// A writable copy of the demo model.
fs::path copy_demo(const std::string& name) {
  const fs::path dir = test::scratch_dir(name) / "m";
  fs::copy(demo(), dir, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(dir))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dir;
}

}  // namespace

TEST(UntrustedFiles, FifosAndDevicesAreRefusedWithoutBlocking) {
  const fs::path dir = test::scratch_dir("fifo");
  ASSERT_EQ(::mkfifo((dir / "config.json").c_str(), 0600), 0);
  // Opening a FIFO for reading blocks until a writer appears; these must return at once with an error.
  EXPECT_ERROR_HAS(read_regular_file(dir / "config.json", 1 << 20), "is a FIFO; only regular files are read");
  EXPECT_ERROR_HAS(load_model_config(dir.string()), "is a FIFO");
  EXPECT_ERROR_HAS(regular_file_exists(dir / "config.json"), "is a FIFO");
  ASSERT_EQ(::mkfifo((dir / "model.safetensors").c_str(), 0600), 0);
  EXPECT_ERROR_HAS(SafetensorsFile((dir / "model.safetensors").string()), "not a regular file");
  EXPECT_ERROR_HAS(read_regular_file("/dev/zero", 1 << 20), "is a character device");
  EXPECT_ERROR_HAS(read_regular_file(dir, 1 << 20), "is a directory");
  EXPECT_FALSE(regular_file_exists(dir / "absent.json"));
}

TEST(UntrustedFiles, SizeAndDepthLimits) {
  const fs::path dir = test::scratch_dir("json_limits");
  std::ofstream(dir / "big.json") << std::string(5000, ' ') << "{}";
  EXPECT_ERROR_HAS(read_json_file(dir / "big.json", 1000), "over the 1000 byte limit");
  EXPECT_TRUE(read_json_file(dir / "big.json", 10000).is_object());
  std::ofstream(dir / "deep.json") << std::string(100000, '[') << std::string(100000, ']');
  EXPECT_ERROR_HAS(read_json_file(dir / "deep.json"), "nests deeper than");
  EXPECT_ERROR_HAS(read_ordered_json_file(dir / "deep.json"), "nests deeper than");
}

TEST(UntrustedFiles, ConfigDimensionsAreBounded) {
  struct Case {
    const char* field;
    nlohmann::json value;
  };
  // Zero-size dimensions divided by zero in the kernels; 2^62 layers sized gigabytes before failing.
  for (const Case& c : {Case{"moe_intermediate_size", 0}, Case{"linear_num_value_heads", 0},
                        Case{"num_hidden_layers", int64_t(1) << 62}, Case{"hidden_size", int64_t(1) << 40},
                        Case{"num_experts", int64_t(1) << 30}, Case{"linear_value_head_dim", 0},
                        Case{"linear_key_head_dim", 0}, Case{"vocab_size", int64_t(1) << 40},
                        Case{"linear_conv_kernel_dim", 100000}}) {
    nlohmann::json j = demo_config();
    j[c.field] = c.value;
    EXPECT_ERROR_HAS(parse_model_config(j), c.field);
  }
  nlohmann::json j = demo_config();
  j["rms_norm_eps"] = -1.0;
  EXPECT_ERROR_HAS(parse_model_config(j), "rms_norm_eps");
  EXPECT_NO_THROW(parse_model_config(demo_config()));
}

TEST(UntrustedFiles, IndexMustCoverEveryShardTensor) {
  const fs::path dir = copy_demo("index_cover");
  nlohmann::json idx = read_json_file(dir / "model.safetensors.index.json");
  const std::string dropped = "model.norm.weight";
  ASSERT_TRUE(idx["weight_map"].contains(dropped));
  idx["weight_map"].erase(dropped);
  std::ofstream(dir / "model.safetensors.index.json") << idx.dump();
  EXPECT_ERROR_HAS(Checkpoint(dir.string()), "holds tensor '" + dropped + "', which model.safetensors.index.json does not list");
  std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map": {}})";
  EXPECT_ERROR_HAS(Checkpoint(dir.string()), "weight_map is empty");
}

TEST(UntrustedFiles, LongTensorNamesAreRefusedAndNeverRegexMatched) {
  const fs::path dir = test::scratch_dir("long_name");
  const std::string name(40000, 'a');
  test::write_raw_safetensors(dir / "x.safetensors",
                              R"({")" + name + R"(": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                              std::string(4, '\0'));
  EXPECT_ERROR_HAS(SafetensorsFile((dir / "x.safetensors").string()), "over the 1024 byte limit");
  // The name tests themselves are linear string scans (std::regex overflowed the stack on this).
  const std::string hostile = "model.layers.0." + std::string(40000, '.') + "mlp.gate.weight";
  EXPECT_TRUE(ct_name_is_kept(hostile));
  EXPECT_FALSE(ct_name_is_kept("model.layers.0." + std::string(40000, 'x') + ".q_proj.weight"));
}

// A shard truncated after it was mapped: the next read of a vanished page raises SIGBUS, which becomes one
// clear message and exit status 3.
TEST(UntrustedFilesDeathTest, ShardTruncatedWhileMappedIsAClearError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const fs::path dir = test::scratch_dir("sigbus");
  const fs::path p = dir / "big.safetensors";
  const size_t n = 1 << 20;  // floats: 4 MiB, many pages
  test::write_raw_safetensors(p, R"({"w": {"dtype": "F32", "shape": [)" + std::to_string(n) + R"(], "data_offsets": [0, )" +
                                     std::to_string(4 * n) + "]}}",
                              std::string(4 * n, '\1'));
  EXPECT_EXIT(
      {
        SafetensorsFile f(p.string());
        ::truncate(p.c_str(), 4096);
        // The death-test child (its own scratch directory: it reran the test up to here) ends on the signal, not
        // at exit, so its directory goes now; the mapping outlives the unlink.
        fs::remove_all(dir);
        const auto* d = static_cast<const volatile uint8_t*>(f.view("w").data);
        unsigned sum = 0;
        for (size_t i = 0; i < 4 * n; i += 4096) sum += d[i];
        std::exit(sum == 12345 ? 0 : 0);
      },
      ::testing::ExitedWithCode(3), "big.safetensors: the file shrank");
}
