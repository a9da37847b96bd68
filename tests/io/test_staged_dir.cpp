// Output safety of StagedDir beyond the basics in test_checkpoint_writer.cpp (issue 11): an output path with no
// name ("/", ".") is refused at once (it used to loop forever), --force replacement swaps the directories (DST
// is the complete old output until the swap and the complete new one after it, nothing left beside it), and a
// directory that merely has a stage's name is never reused or removed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  return {std::istreambuf_iterator<char>(f), {}};
}

}  // namespace

TEST(StagedDirSafety, PathsWithoutANameAreRefused) {
  for (const char* dst : {"/", ".", "..", "//"}) {
    try {
      StagedDir s(dst, true);
      ADD_FAILURE() << dst << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("must name a directory"), std::string::npos) << e.what();
    }
  }
}

TEST(StagedDirSafety, ForceSwapsTheOldOutputForTheNewOne) {
  const fs::path root = test::scratch_dir("staged_swap");
  const fs::path dst = root / "out";
  {
    StagedDir s(dst, false);
    write_file(s.path() / "v", "old");
    s.commit();
  }
  {
    StagedDir s(dst, true);
    write_file(s.path() / "v", "new");
    EXPECT_EQ(slurp(dst / "v"), "old");  // untouched until commit
    s.commit();
    EXPECT_EQ(slurp(dst / "v"), "new");
  }
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    EXPECT_EQ(e.path().filename(), "out") << "left behind: " << e.path();
    ++n;
  }
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(fs::exists(dst / kOutputMarker));
}

TEST(StagedDirSafety, AnExistingStageNameIsNeitherReusedNorRemoved) {
  const fs::path root = test::scratch_dir("staged_taken");
  const fs::path taken = root / fmt::format("out.partial-{}-0", ::getpid());
  fs::create_directories(taken);
  write_file(taken / "notes.txt", "precious");
  {
    StagedDir s(root / "out", false);
    EXPECT_NE(s.path(), taken);
  }
  EXPECT_EQ(slurp(taken / "notes.txt"), "precious");
}
