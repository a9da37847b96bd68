// MappedFile: a read-only mmap of a whole regular file (RAII). Checkpoint tensors are views into it, so the file
// must outlive every TensorView taken from it.
// A mapped file that shrinks while mapped (another process truncates a shard mid-run) makes the next read of a
// vanished page raise SIGBUS. That cannot become a C++ exception (it can hit any thread, inside any kernel), so
// every live mapping is registered with a SIGBUS handler that, for an address inside one, prints
// "hlwq: error: <path>: file shrank while mapped ..." and ends the process with exit status 3; a SIGBUS
// elsewhere keeps its previous disposition. Files truncated before mapping never get this far: SafetensorsFile
// checks every range against the size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hlwq {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws hlwq::Error naming the path and errno text
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the resident pages of [offset, offset + len) (rounded inward to pages): streaming through a model
  // larger than RAM then keeps the resident set bounded. The data stays readable (it is re-read on access).
  void release(size_t offset, size_t len) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* slot_ = nullptr;  // this mapping's entry in the SIGBUS handler's table (mapped_file.cpp)
};

}  // namespace hlwq
