// Mutation fuzzing of the safetensors reader: thousands of seeded corruptions of a real shard (bytes flipped
// in the length field, the header JSON and the data, truncation, extension) must each either open cleanly or
// throw hlwq::Error — never crash, hang or read out of bounds (run under ASan/valgrind to check the latter).
// When a corrupted file does open, every tensor view must lie inside the file.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "core/error.h"
#include "io/safetensors.h"
#include "st_craft.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

// A small valid shard: the demo model's second shard (one tensor) is 5 KB of header + data.
fs::path seed_file() { return hlwq::test::source_dir() / "models/tiny-moe-dev/model-00002-of-00002.safetensors"; }

}  // namespace

TEST(SafetensorsFuzz, CorruptionsAreErrorsNeverCrashes) {
  const std::string seed = read_all(seed_file());
  ASSERT_GT(seed.size(), 64u);
  uint64_t hlen = 0;
  std::memcpy(&hlen, seed.data(), 8);
  const fs::path dir = hlwq::test::scratch_dir("st_fuzz");
  const fs::path p = dir / "x.safetensors";
  std::mt19937_64 rng(20261126);
  int opened = 0, rejected = 0;
  constexpr int kCases = 2000;
  const std::string json_bytes = "{}[],:\"0123456789-eE.";
  for (int i = 0; i < kCases; ++i) {
    std::string s = seed;
    switch (i % 5) {
      case 0:  // length field
        s[rng() % 8] = char(rng());
        break;
      case 1:  // a JSON-structural byte somewhere in the header
        s[8 + rng() % hlen] = json_bytes[rng() % json_bytes.size()];
        break;
      case 2:  // any byte in the header
        s[8 + rng() % hlen] = char(rng());
        break;
      case 3:  // truncate
        s.resize(rng() % s.size());
        break;
      case 4:  // extend
        s.append(1 + rng() % 64, char(rng()));
        break;
    }
    {
      std::ofstream f(p, std::ios::binary | std::ios::trunc);
      f << s;
    }
    try {
      SafetensorsFile f(p.string());
      ++opened;
      for (const auto& e : f.entries()) {
        TensorView v = f.view(e);
        const auto* b = static_cast<const uint8_t*>(v.data);
        ASSERT_LE(e.end, s.size());
        ASSERT_EQ(v.nbytes(), e.end - e.begin);
        if (v.nbytes()) (void)b[v.nbytes() - 1];  // touch the last byte: must be mapped
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_EQ(opened + rejected, kCases);
  EXPECT_GT(rejected, kCases / 2);  // most corruptions must be caught
}
