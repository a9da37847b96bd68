#include "io/checkpoint_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace hlwq {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void pwrite_all(int fd, const void* data, size_t n, uint64_t offset, const fs::path& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off_t(offset));
    if (w < 0 && errno == EINTR) continue;
    HLWQ_CHECK(w > 0, "{}: write of {} bytes at offset {} failed: {}", path.string(), n, offset,
               w < 0 ? std::strerror(errno) : "wrote nothing");
    p += w;
    n -= size_t(w);
    offset += uint64_t(w);
  }
}

}  // namespace

CheckpointWriter::CheckpointWriter(fs::path dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes,
                                   std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)) {
  // Plan: group tensors into shards.
  std::vector<std::vector<const TensorSpec*>> groups(1);
  uint64_t cur = 0;
  for (const auto& s : specs) {
    HLWQ_CHECK(!slots_.count(s.name), "checkpoint writer: tensor '{}' planned twice", s.name);
    slots_[s.name] = Slot{};
    if (cur > 0 && cur + s.nbytes() > max_shard_bytes) {
      groups.emplace_back();
      cur = 0;
    }
    groups.back().push_back(&s);
    cur += s.nbytes();
  }
  const size_t k = groups.size();
  for (size_t gi = 0; gi < k; ++gi) {
    Shard sh;
    sh.file_name = k == 1 ? "model.safetensors" : fmt::format("model-{:05d}-of-{:05d}.safetensors", gi + 1, k);
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t off = 0;
    for (const TensorSpec* s : groups[gi]) {
      header[s->name] = {{"dtype", std::string(dtype_name(s->dtype))}, {"shape", s->shape},
                         {"data_offsets", {off, off + s->nbytes()}}};
      off += s->nbytes();
    }
    std::string hs = header.dump();
    hs.resize((hs.size() + 7) / 8 * 8, ' ');  // pad with spaces so the buffer starts 8-byte aligned
    const uint64_t hlen = hs.size();
    const uint64_t file_size = 8 + hlen + off;
    for (const TensorSpec* s : groups[gi]) {
      Slot& slot = slots_.at(s->name);
      slot.shard = gi;
      slot.nbytes = s->nbytes();
      slot.offset = 8 + hlen + header[s->name]["data_offsets"][0].get<uint64_t>();
    }
    const fs::path path = dir_ / sh.file_name;
    sh.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    HLWQ_CHECK(sh.fd >= 0, "{}: cannot create: {}", path.string(), std::strerror(errno));
    shards_.push_back(sh);
    if (file_size > 0) {
      int rc = ::posix_fallocate(sh.fd, 0, off_t(file_size));
      HLWQ_CHECK(rc == 0, "{}: cannot reserve {} bytes: {}", path.string(), file_size, std::strerror(rc));
    }
    pwrite_all(sh.fd, &hlen, 8, 0, path);
    pwrite_all(sh.fd, hs.data(), hs.size(), 8, path);
    total_bytes_ += off;
  }
}

CheckpointWriter::~CheckpointWriter() {
  for (auto& s : shards_)
    if (s.fd >= 0) ::close(s.fd);
}

void CheckpointWriter::write(const std::string& name, const void* data, size_t nbytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(name);
    HLWQ_CHECK(it != slots_.end(), "checkpoint writer: tensor '{}' was not planned", name);
    HLWQ_CHECK(nbytes == it->second.nbytes, "checkpoint writer: tensor '{}' planned as {} bytes, got {}", name,
               it->second.nbytes, nbytes);
  }
  write_part(name, 0, data, nbytes);
}

void CheckpointWriter::write_part(const std::string& name, uint64_t offset, const void* data, size_t nbytes) {
  Slot* slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(name);
    HLWQ_CHECK(it != slots_.end(), "checkpoint writer: tensor '{}' was not planned", name);
    slot = &it->second;
    HLWQ_CHECK(slot->done + nbytes <= slot->nbytes && offset + nbytes <= slot->nbytes,
               "checkpoint writer: tensor '{}' written twice or past its {} bytes", name, slot->nbytes);
    slot->done += nbytes;
  }
  const Shard& sh = shards_[slot->shard];
  pwrite_all(sh.fd, data, nbytes, slot->offset + offset, dir_ / sh.file_name);
}

std::vector<std::string> CheckpointWriter::finish() {
  json weight_map = json::object();
  for (const auto& [name, slot] : slots_) {
    HLWQ_CHECK(slot.done == slot.nbytes, "checkpoint writer: tensor '{}' was planned as {} bytes but {} were written",
               name, slot.nbytes, slot.done);
    weight_map[name] = shards_[slot.shard].file_name;
  }
  std::vector<std::string> names;
  for (auto& sh : shards_) {
    const fs::path path = dir_ / sh.file_name;
    HLWQ_CHECK(::fsync(sh.fd) == 0, "{}: fsync failed: {}", path.string(), std::strerror(errno));
    HLWQ_CHECK(::close(sh.fd) == 0, "{}: close failed: {}", path.string(), std::strerror(errno));
    sh.fd = -1;
    names.push_back(sh.file_name);
  }
  if (shards_.size() > 1) {
    json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
    write_file(dir_ / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  return names;
}

void write_file(const fs::path& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  HLWQ_CHECK(fd >= 0, "{}: cannot create: {}", path.string(), std::strerror(errno));
  try {
    pwrite_all(fd, content.data(), content.size(), 0, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  HLWQ_CHECK(::close(fd) == 0, "{}: close failed: {}", path.string(), std::strerror(errno));
}

StagedDir::StagedDir(fs::path dst, bool force) : dst_(std::move(dst)), force_(force) {
  while (!dst_.empty() && !dst_.has_filename()) dst_ = dst_.parent_path();  // "out/" -> "out"
  HLWQ_CHECK(!dst_.empty(), "output path is empty");
  HLWQ_CHECK(force_ || !fs::exists(dst_), "{}: already exists (pass --force to replace it)", dst_.string());
  const fs::path parent = dst_.has_parent_path() ? dst_.parent_path() : fs::path(".");
  HLWQ_CHECK(fs::is_directory(parent), "{}: parent directory {} does not exist", dst_.string(), parent.string());
  stage_ = dst_;
  stage_ += fmt::format(".partial-{}", ::getpid());
  std::error_code ec;
  fs::remove_all(stage_, ec);
  fs::create_directory(stage_, ec);
  HLWQ_CHECK(!ec, "{}: cannot create the staging directory: {}", stage_.string(), ec.message());
}

StagedDir::~StagedDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(stage_, ec);
  }
}

void StagedDir::commit() {
  std::error_code ec;
  fs::path old;
  if (fs::exists(dst_)) {
    HLWQ_CHECK(force_, "{}: appeared while writing; not replacing it without --force", dst_.string());
    old = dst_;
    old += fmt::format(".old-{}", ::getpid());
    fs::rename(dst_, old, ec);
    HLWQ_CHECK(!ec, "{}: cannot move the old output aside: {}", dst_.string(), ec.message());
  }
  fs::rename(stage_, dst_, ec);
  HLWQ_CHECK(!ec, "{}: cannot move {} into place: {}", dst_.string(), stage_.string(), ec.message());
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace hlwq
