#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

TEST(CheckpointWriter, ShardsByteExactRoundTripAndIndex) {
  auto dir = hlwq::test::scratch_dir("cw_roundtrip");
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 5; ++i) specs.push_back({fmt::format("t{}", i), DType::F32, {64}});  // 256 bytes each
  CheckpointWriter w(dir, specs, 600, {{"format", "pt"}});  // two tensors per shard -> 3 shards
  EXPECT_EQ(w.n_shards(), 3u);
  // write out of order, as parallel workers do
  for (int i : {3, 0, 4, 2, 1}) {
    std::vector<float> v(64);
    std::iota(v.begin(), v.end(), float(i * 100));
    w.write(fmt::format("t{}", i), v.data(), v.size() * 4);
  }
  auto shards = w.finish();
  EXPECT_EQ(shards.front(), "model-00001-of-00003.safetensors");
  Checkpoint c(dir.string());
  ASSERT_EQ(c.names().size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.view(fmt::format("t{}", i)).as<float>()[7], float(i * 100 + 7));
  auto idx = read_json_file((dir / "model.safetensors.index.json").string());
  EXPECT_EQ(idx["metadata"]["total_size"], 5 * 256);
  EXPECT_EQ(idx["weight_map"]["t4"], "model-00003-of-00003.safetensors");
}

TEST(CheckpointWriter, SingleShardIsModelSafetensors) {
  auto dir = hlwq::test::scratch_dir("cw_single");
  CheckpointWriter w(dir, {{"x", DType::BF16, {2, 2}}}, 1 << 20);
  uint16_t v[4] = {1, 2, 3, 4};
  w.write("x", v, 8);
  w.finish();
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
}

TEST(CheckpointWriter, RejectsMisuse) {
  auto dir = hlwq::test::scratch_dir("cw_misuse");
  CheckpointWriter w(dir, {{"x", DType::F32, {2}}, {"y", DType::F32, {1}}}, 1 << 20);
  float v[2] = {1, 2};
  EXPECT_THROW(w.write("x", v, 4), Error);      // wrong size
  EXPECT_THROW(w.write("zz", v, 8), Error);     // not planned
  w.write("x", v, 8);
  EXPECT_THROW(w.write("x", v, 8), Error);      // twice
  EXPECT_THROW(w.finish(), Error);              // y never written
}

TEST(CheckpointWriter, FailedWriteIsAnErrorNotACrash) {
  // A file-size limit makes the reservation fail like a full disk would (EFBIG instead of ENOSPC).
  auto dir = hlwq::test::scratch_dir("cw_full");
  struct rlimit old {};
  getrlimit(RLIMIT_FSIZE, &old);
  auto prev = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  try {
    CheckpointWriter w(dir, {{"big", DType::F32, {1 << 16}}}, 1 << 30);
    ADD_FAILURE() << "expected the reservation to fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reserve"), std::string::npos) << e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, prev);
}

TEST(StagedDir, CommitIsAtomicAndAbandonedStageIsRemoved) {
  auto root = hlwq::test::scratch_dir("staged");
  const fs::path dst = root / "out";
  fs::path stage;
  {
    StagedDir s(dst, false);
    stage = s.path();
    write_file(s.path() / "a.txt", "hello");
    EXPECT_FALSE(fs::exists(dst));
  }  // not committed
  EXPECT_FALSE(fs::exists(stage));
  EXPECT_FALSE(fs::exists(dst));
  {
    StagedDir s(dst, false);
    write_file(s.path() / "a.txt", "v1");
    write_file(s.path() / "config.json", "{}");
    s.commit();
  }
  EXPECT_TRUE(fs::exists(dst / "a.txt"));
  EXPECT_TRUE(fs::exists(dst / kOutputMarker));  // so a later --force may replace it
  EXPECT_FALSE(fs::exists(dst / kStageMarker));
  EXPECT_THROW(StagedDir(dst, false), Error);  // exists without --force
  {
    StagedDir s(dst, true);
    write_file(s.path() / "b.txt", "v2");
    s.commit();
  }
  EXPECT_FALSE(fs::exists(dst / "a.txt"));
  EXPECT_TRUE(fs::exists(dst / "b.txt"));
  for (const auto& e : fs::directory_iterator(root)) EXPECT_EQ(e.path().filename(), "out");
}

namespace {
size_t open_fd_count() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}
}  // namespace

// Tensors planned in an order that would misalign them (BF16 [1], then I64, I32, F64) come out aligned: the
// writer lays each shard out by dtype size, and the reader (which checks alignment) opens every shard.
TEST(CheckpointWriter, MixedDtypesAreLaidOutAligned) {
  auto dir = hlwq::test::scratch_dir("cw_align");
  std::vector<TensorSpec> specs = {{"a.A_log", DType::BF16, {1}},  {"a.weight_shape", DType::I64, {2}},
                                   {"b.u8", DType::U8, {3}},         {"b.weight_packed", DType::I32, {3}},
                                   {"c.f64", DType::F64, {1}},        {"d.scale", DType::BF16, {3}},
                                   {"e.weight_shape", DType::I64, {2}}};
  for (uint64_t shard_bytes : {uint64_t(1) << 20, uint64_t(20)}) {  // one shard, then several
    fs::remove_all(dir);
    fs::create_directories(dir);
    CheckpointWriter w(dir, specs, shard_bytes);
    for (const auto& s : specs) {
      std::vector<uint8_t> v(s.nbytes());
      std::iota(v.begin(), v.end(), uint8_t(s.name[0]));
      w.write(s.name, v.data(), v.size());
    }
    w.finish();
    Checkpoint c(dir.string());  // throws if any tensor is misaligned
    ASSERT_EQ(c.names().size(), specs.size());
    for (const auto& s : specs) {
      TensorView v = c.view(s.name);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % dtype_size(s.dtype), 0u) << s.name;
      EXPECT_EQ(static_cast<const uint8_t*>(v.data)[0], uint8_t(s.name[0])) << s.name;
    }
  }
}

// A failure while creating a later shard must not leak the fds of the shards already opened.
TEST(CheckpointWriter, FailedConstructionClosesOpenedShards) {
  auto dir = hlwq::test::scratch_dir("cw_fdleak");
  struct rlimit old {};
  getrlimit(RLIMIT_FSIZE, &old);
  auto prev = std::signal(SIGXFSZ, SIG_IGN);
  const size_t before = open_fd_count();
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  // Three small shards, then one too big for the file-size limit.
  std::vector<TensorSpec> specs = {{"a", DType::F32, {64}}, {"b", DType::F32, {64}}, {"c", DType::F32, {64}},
                                   {"d", DType::F32, {1 << 16}}};
  EXPECT_THROW(CheckpointWriter(dir, specs, 300), Error);
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, prev);
  EXPECT_EQ(open_fd_count(), before);
}

// --force replaces a previous output only: not a file, not a directory of unrelated files, never the source
// or a directory containing it.
TEST(StagedDir, ForceRefusesWhatIsNotAPreviousOutput) {
  auto root = hlwq::test::scratch_dir("staged_force");
  const fs::path src = root / "models" / "src";
  fs::create_directories(src);
  write_file(src / "config.json", "{}");
  auto expect_refused = [](const fs::path& dst, const std::vector<fs::path>& protect, const std::string& needle) {
    try {
      StagedDir s(dst, true, protect);
      ADD_FAILURE() << "expected " << dst << " to be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_refused(src, {src}, "or a directory containing it");
  expect_refused(root / "models", {src}, "or a directory containing it");
  expect_refused(src / ".." / ".." / "models" / "", {src}, "or a directory containing it");
  const fs::path junk = root / "junk";
  fs::create_directories(junk);
  write_file(junk / "notes.txt", "precious");
  expect_refused(junk, {src}, "was not written by hlwq");
  write_file(junk / "config.json", "{}");  // a model directory hlwq did not write is not replaced either
  expect_refused(junk, {src}, "was not written by hlwq");
  EXPECT_TRUE(fs::exists(junk / "notes.txt"));
  write_file(root / "file", "x");
  expect_refused(root / "file", {src}, "is not a directory");
  EXPECT_TRUE(fs::exists(src / "config.json"));
  // An empty directory, or a previous output (the marker), may be replaced.
  fs::create_directories(root / "empty");
  { StagedDir s(root / "empty", true, {src}); s.commit(); }
  { StagedDir s(root / "empty", true, {src}); write_file(s.path() / "config.json", "{}"); s.commit(); }
  { StagedDir s(root / "empty", true, {src}); s.commit(); }
}

// Stages are recognised by hlwq's markers (the stage marker holds the writer's pid), not by their name: a dead
// run's stage is swept, a live run's is kept, and a directory of the user's that merely looks like a stage stays.
TEST(StagedDir, StagesOfDeadRunsAreSweptLiveOnesKept) {
  auto root = hlwq::test::scratch_dir("staged_sweep");
  auto make_stage = [](const fs::path& d, const std::string& pid) {
    fs::create_directories(d);
    write_file(d / "shard", "x");
    write_file(d / kOutputMarker, std::string(kOutputMarkerText) + "\n");
    write_file(d / kStageMarker, pid);
  };
  const fs::path dead = root / "out.partial-999999999-0";  // 9 digits: above Linux's pid_max (4194304)
  const fs::path live = root / fmt::format("out.partial-{}-0", getppid());
  const fs::path other = root / "other.partial-999999999-0";
  const fs::path users = root / "out.partial-999999999";  // stage-like name, no marker: the user's
  make_stage(dead, "999999999");
  make_stage(live, std::to_string(getppid()));
  make_stage(other, "999999999");
  fs::create_directories(users);
  write_file(users / "notes.txt", "precious");
  { StagedDir s(root / "out", false); }
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));  // another output's stages are not ours to judge
  EXPECT_TRUE(fs::exists(users / "notes.txt"));
}
