#include <gtest/gtest.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "st_craft.h"
#include "test_paths.h"

using namespace hlwq;
using hlwq::test::write_raw_safetensors;
namespace fs = std::filesystem;

namespace {

// Expects construction to throw hlwq::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

const std::string kTwo =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]},"__metadata__":{"format":"pt"}})";

std::string data12() {
  std::string d(12, '\0');
  float a[2] = {1.5f, -2.f};
  uint16_t b[2] = {0x3f80, 0xc000};
  std::memcpy(d.data(), a, 8);
  std::memcpy(d.data() + 8, b, 4);
  return d;
}

}  // namespace

TEST(Safetensors, ReadsValidFile) {
  auto dir = hlwq::test::scratch_dir("st_valid");
  write_raw_safetensors(dir / "x.safetensors", kTwo, data12());
  SafetensorsFile f((dir / "x.safetensors").string());
  ASSERT_EQ(f.entries().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  auto a = f.view("a");
  EXPECT_EQ(a.desc(), "[2] F32");
  EXPECT_EQ(a.as<float>()[1], -2.f);
  auto b = tensor_to_f32(f.view("b"));
  EXPECT_EQ(b[0], 1.f);
  EXPECT_EQ(b[1], -2.f);
}

TEST(Safetensors, RejectsTooShortFile) {
  auto dir = hlwq::test::scratch_dir("st_short");
  std::ofstream(dir / "x.safetensors") << "abc";
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "too short");
}

TEST(Safetensors, RejectsHeaderLengthBeyondFile) {
  auto dir = hlwq::test::scratch_dir("st_hlen");
  write_raw_safetensors(dir / "x.safetensors", kTwo, data12(), 1000000);
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "runs past the end");
}

TEST(Safetensors, RejectsGarbageHeader) {
  auto dir = hlwq::test::scratch_dir("st_garbage");
  write_raw_safetensors(dir / "x.safetensors", "{not json at all", "");
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "not valid JSON");
}

TEST(Safetensors, RejectsOffsetsOutOfRange) {
  auto dir = hlwq::test::scratch_dir("st_range");
  // truncated data: header promises 12 bytes, file holds 10
  write_raw_safetensors(dir / "x.safetensors", kTwo, data12().substr(0, 10));
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "run past the data buffer");
}

TEST(Safetensors, RejectsOverlap) {
  auto dir = hlwq::test::scratch_dir("st_overlap");
  const std::string h =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  write_raw_safetensors(dir / "x.safetensors", h, data12());
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "overlaps");
}

TEST(Safetensors, RejectsGap) {
  auto dir = hlwq::test::scratch_dir("st_gap");
  const std::string h =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  write_raw_safetensors(dir / "x.safetensors", h, data12());
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "gap");
}

TEST(Safetensors, RejectsShapeSizeMismatch) {
  auto dir = hlwq::test::scratch_dir("st_size");
  const std::string h =
      R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]}})";
  write_raw_safetensors(dir / "x.safetensors", h, data12());
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "needs 12 bytes");
}

TEST(Safetensors, RejectsUnknownDtypeAndNegativeShape) {
  auto dir = hlwq::test::scratch_dir("st_dtype");
  write_raw_safetensors(dir / "x.safetensors", R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", "x");
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "unknown dtype 'F4'");
  write_raw_safetensors(dir / "y.safetensors", R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x");
  expect_error([&] { SafetensorsFile f((dir / "y.safetensors").string()); }, "non-negative");
}

TEST(Safetensors, RejectsHugeShapeProductWithoutOverflow) {
  auto dir = hlwq::test::scratch_dir("st_overflow");
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"a":{"dtype":"F64","shape":[281474976710656,281474976710656],"data_offsets":[0,8]}})",
                        std::string(8, '\0'));
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "overflows");
}

TEST(Checkpoint, OpensShardedIndexAndReportsMissingShard) {
  auto dir = hlwq::test::scratch_dir("ck_missing");
  write_raw_safetensors(dir / "model-00001-of-00002.safetensors", kTwo, data12());
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})";
  expect_error([&] { Checkpoint c(dir.string()); }, "shard 'model-00002-of-00002.safetensors'");
}

TEST(Checkpoint, IndexNamingAbsentTensorAndEscapingPath) {
  auto dir = hlwq::test::scratch_dir("ck_absent");
  write_raw_safetensors(dir / "s1.safetensors", kTwo, data12());
  std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map":{"zz":"s1.safetensors"}})";
  expect_error([&] { Checkpoint c(dir.string()); }, "does not hold it");
  std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map":{"a":"../s1.safetensors"}})";
  expect_error([&] { Checkpoint c(dir.string()); }, "not a plain file name");
}

TEST(Checkpoint, SingleFileAndEmptyDir) {
  auto dir = hlwq::test::scratch_dir("ck_single");
  expect_error([&] { Checkpoint c(dir.string()); }, "no model.safetensors");
  write_raw_safetensors(dir / "model.safetensors", kTwo, data12());
  Checkpoint c(dir.string());
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.total_bytes(), 12u);
  expect_error([&] { c.view("nope"); }, "no tensor 'nope'");
}

TEST(Checkpoint, OpensBundledDemoModel) {
  Checkpoint c((hlwq::test::source_dir() / "models" / "tiny-moe-dev").string());
  EXPECT_EQ(c.entry("model.embed_tokens.weight").shape, (Shape{8192, 256}));
  EXPECT_EQ(c.entry("model.embed_tokens.weight").dtype, DType::BF16);
}

// Consumers read BF16 through uint16_t*: a tensor at an odd absolute offset must be refused, not mapped.
TEST(Safetensors, RejectsTensorMisalignedForItsDtype) {
  auto dir = hlwq::test::scratch_dir("st_misaligned");
  std::string h = R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})";
  if ((8 + h.size()) % 2 == 0) h += ' ';  // make the buffer start at an odd offset
  write_raw_safetensors(dir / "x.safetensors", h, std::string(4, '\0'), -1, /*pad=*/false);
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); },
               fmt::format("tensor 'a' at offset {} is not aligned to its 2-byte dtype", 8 + h.size()));
  // A U8 tensor before it shifts an aligned buffer by one byte: the second tensor is the misaligned one.
  const std::string h2 =
      R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c":{"dtype":"I32","shape":[1],"data_offsets":[1,5]}})";
  write_raw_safetensors(dir / "y.safetensors", h2, std::string(5, '\0'));
  expect_error([&] { SafetensorsFile f((dir / "y.safetensors").string()); }, "tensor 'c' at offset");
}

// A shape nested 100000 deep must give a clean error: no recursion (parse, dump in the message) on its depth.
TEST(Safetensors, DeeplyNestedHeaderIsACleanError) {
  auto dir = hlwq::test::scratch_dir("st_deep");
  const size_t depth = 100000;
  const std::string h = R"({"a":{"dtype":"U8","shape":)" + std::string(depth, '[') + std::string(depth, ']') +
                        R"(,"data_offsets":[0,0]}})";
  write_raw_safetensors(dir / "x.safetensors", h, "");
  expect_error([&] { SafetensorsFile f((dir / "x.safetensors").string()); }, "nests deeper than 64 levels");
  // Within the depth cap, a nested dimension is quoted briefly, not dumped in full.
  const std::string h2 = R"({"a":{"dtype":"U8","shape":[[[[[[7]]]]]],"data_offsets":[0,0]}})";
  write_raw_safetensors(dir / "y.safetensors", h2, "");
  expect_error([&] { SafetensorsFile f((dir / "y.safetensors").string()); },
               "shape dimension [[[[...]]]] is not a non-negative integer");
}
