// Writing safetensors checkpoints with bounded memory. The layout of every shard is planned up front from the
// tensor specs (names, dtypes, shapes), so headers are written first and tensor data can then be written in
// any order, from any thread, straight to its final offset (pwrite). Space is reserved at creation
// (posix_fallocate), so a full disk is reported before the long work starts, not at the end.
// StagedDir makes a whole output directory appear atomically: everything is written under
// "<dst>.partial-<pid>-<k>" and moved to <dst> only by commit(); an uncommitted stage is removed on destruction.
// Every output carries the marker file kOutputMarker, and a stage also kStageMarker (its writer's pid): --force
// replaces only a directory with the output marker (or an empty one), and stale stages are recognised by the
// markers, not by name. Replacing an existing dst swaps the two directories atomically (renameat2
// RENAME_EXCHANGE), so dst is always either the old or the new output, whatever the moment of a crash.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace hlwq {

struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t nbytes() const { return uint64_t(shape_numel(shape)) * dtype_size(dtype); }
};

class CheckpointWriter {
 public:
  // Tensors go to shards in the given order; a new shard starts when the next tensor would push the current one
  // past max_shard_bytes. Inside a shard, tensors are laid out by dtype size descending, then name, so every
  // tensor is aligned to its dtype (SafetensorsFile refuses misaligned ones). One shard is named model.safetensors, several model-0000i-of-0000K.safetensors plus
  // model.safetensors.index.json (HF's convention).
  CheckpointWriter(std::filesystem::path dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes,
                   std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Writes the bytes of one planned tensor; nbytes must equal the planned size. Thread-safe.
  void write(const std::string& name, const void* data, size_t nbytes);
  // Writes bytes [offset, offset + nbytes) of a planned tensor, so a large tensor can be streamed in pieces.
  // The tensor counts as written once its pieces add up to its size; pieces must not overlap.
  void write_part(const std::string& name, uint64_t offset, const void* data, size_t nbytes);
  // Checks every tensor was written once, syncs and closes the shards, writes the index. Returns shard names.
  std::vector<std::string> finish();
  // The planned tensors in the order their bytes lie on disk (shard by shard, offset ascending): writing them in
  // this order makes the writes sequential.
  std::vector<std::string> names_in_file_order() const;
  size_t n_shards() const { return shards_.size(); }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  struct Slot {
    size_t shard;
    uint64_t offset;  // absolute file offset
    uint64_t nbytes;
    uint64_t done = 0;  // bytes written so far
  };
  struct Shard {
    std::string file_name;
    int fd = -1;
  };
  // Lays out each group as one shard file and writes its header; the constructor closes fds if it throws.
  void plan_shards(const std::vector<std::vector<const TensorSpec*>>& groups,
                   std::map<std::string, std::string> metadata);
  std::filesystem::path dir_;
  std::vector<Shard> shards_;
  std::map<std::string, Slot> slots_;
  uint64_t total_bytes_ = 0;
  std::mutex mu_;
};

// Writes a whole small file (config, index, copied tokenizer files); throws with the path and errno on failure.
void write_file(const std::filesystem::path& path, const std::string& content);

inline constexpr const char* kOutputMarker = ".hlwq-output";
inline constexpr const char* kOutputMarkerText = "written by hlwq; `hlwq quantize --force` may replace this directory";
inline constexpr const char* kStageMarker = ".hlwq-stage";

class StagedDir {
 public:
  // Fails if dst exists and force is false. With force, dst may only be replaced when it is an empty directory
  // or one holding kOutputMarker (hlwq's own output), and never when it is, or contains, a path in `protect`
  // (the source). The stage lives beside dst (same filesystem, so rename is atomic).
  StagedDir(std::filesystem::path dst, bool force, const std::vector<std::filesystem::path>& protect = {});
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;

  const std::filesystem::path& path() const { return stage_; }
  // Moves the stage to dst (replacing an existing dst when forced); on failure dst is left as it was.
  void commit();

 private:
  void check_replaceable() const;  // the --force rules above; throws when dst may not be replaced
  std::filesystem::path dst_, stage_;
  bool force_, committed_ = false;
};

}  // namespace hlwq
