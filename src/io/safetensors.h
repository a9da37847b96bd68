// safetensors reading (SPEC §2). SafetensorsFile maps one file and validates its header completely before
// any tensor is touched: header length within the file, JSON object, known dtype, non-negative shape whose
// element count times dtype size equals the byte range, ranges inside the buffer, sorted ranges that tile the
// buffer exactly (no gap, no overlap). These files come from the internet, so nothing is trusted.
// Checkpoint opens a model directory: model.safetensors.index.json with its shards, or one model.safetensors.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace hlwq {

struct TensorEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the data buffer
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::vector<TensorEntry>& entries() const { return entries_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorEntry* find(const std::string& name) const;
  TensorView view(const TensorEntry& e) const;
  TensorView view(const std::string& name) const;  // throws if absent
  // Drops the resident pages of bytes [offset, offset + len) of a tensor (MappedFile::release).
  void release(const TensorEntry& e, uint64_t offset, uint64_t len) const;

 private:
  MappedFile file_;
  const uint8_t* buffer_ = nullptr;  // start of the data buffer (after the header)
  std::vector<TensorEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's tensors, across shards.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;  // throws with the dir and name if absent
  TensorView view(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;
  uint64_t total_bytes() const;  // sum of tensor bytes
  // Drops the resident pages of a tensor (or of bytes [offset, offset + len) of it) after streaming it.
  void release(const std::string& name) const;
  void release(const std::string& name, uint64_t offset, uint64_t len) const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, const TensorEntry*>> where_;  // name -> (file index, entry)
};

}  // namespace hlwq
