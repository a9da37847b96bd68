#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
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
    s.commit();
  }
  EXPECT_TRUE(fs::exists(dst / "a.txt"));
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
