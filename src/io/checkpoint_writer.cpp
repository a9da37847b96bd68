#include "io/checkpoint_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
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

// fsyncs a directory, so renames and file creations inside it survive a crash.
void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  HLWQ_CHECK(fd >= 0, "{}: cannot open directory to sync it: {}", dir.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  HLWQ_CHECK(rc == 0, "{}: fsync of the directory failed: {}", dir.string(), std::strerror(err));
}

bool is_ancestor_or_same(const fs::path& a, const fs::path& b) {  // both canonical
  auto ia = a.begin(), ib = b.begin();
  for (; ia != a.end(); ++ia, ++ib)
    if (ib == b.end() || *ia != *ib) return false;
  return true;
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
  // Within a shard, order tensors by element size (largest first), then name. The header is padded to 8
  // bytes, so every tensor then starts at a multiple of its element size, which SafetensorsFile requires
  // (e.g. a BF16 [2] A_log before an I64 weight_shape would misalign the I64). Shard membership is unchanged.
  for (auto& g : groups)
    std::sort(g.begin(), g.end(), [](const TensorSpec* a, const TensorSpec* b) {
      const size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
      return sa != sb ? sa > sb : a->name < b->name;
    });
  // The destructor does not run when the constructor throws, so close the shards opened so far by hand.
  try {
    plan_shards(groups, std::move(metadata));
  } catch (...) {
    for (auto& sh : shards_)
      if (sh.fd >= 0) ::close(sh.fd);
    shards_.clear();
    throw;
  }
}

void CheckpointWriter::plan_shards(const std::vector<std::vector<const TensorSpec*>>& groups,
                                   std::map<std::string, std::string> metadata) {
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
    // Registered before open, so that every fd that exists is in shards_ for the cleanup above.
    shards_.push_back(sh);
    sh.fd = shards_.back().fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    HLWQ_CHECK(sh.fd >= 0, "{}: cannot create: {}", path.string(), std::strerror(errno));
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

std::vector<std::string> CheckpointWriter::names_in_file_order() const {
  std::vector<std::pair<std::pair<size_t, uint64_t>, std::string>> v;
  v.reserve(slots_.size());
  for (const auto& [name, slot] : slots_) v.push_back({{slot.shard, slot.offset}, name});
  std::sort(v.begin(), v.end());
  std::vector<std::string> names;
  names.reserve(v.size());
  for (auto& e : v) names.push_back(std::move(e.second));
  return names;
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
    // close() releases the fd even when it reports an error; forget it first so the destructor does not
    // close a number that may by then belong to another file.
    const int fd = sh.fd;
    sh.fd = -1;
    HLWQ_CHECK(::close(fd) == 0, "{}: close failed: {}", path.string(), std::strerror(errno));
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
    // Synced like the shards: a config.json lost in a crash after commit would leave an unusable model.
    HLWQ_CHECK(::fsync(fd) == 0, "{}: fsync failed: {}", path.string(), std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  HLWQ_CHECK(::close(fd) == 0, "{}: close failed: {}", path.string(), std::strerror(errno));
}

namespace {

std::string read_small(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return "";
  char buf[256];  // the markers are shorter
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  return n > 0 ? std::string(buf, size_t(n)) : "";
}

bool has_output_marker(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::symlink_status(dir / kOutputMarker, ec)) &&
         read_small(dir / kOutputMarker).starts_with(kOutputMarkerText);
}

// A run killed mid-way (Ctrl-C, OOM) leaves its stage behind, possibly tens of GB. A stage is recognised by
// hlwq's stage marker (which holds the writer's pid), never by its name alone: only directories beside dst
// named "<dst>.<anything>" that carry both markers and whose writer no longer exists are removed; a live
// process's stage (a concurrent run) and anything of the user's are left alone.
void remove_dead_stages(const fs::path& parent, const std::string& name) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string f = e.path().filename().string();
    if (!f.starts_with(name + ".") || !fs::is_directory(fs::symlink_status(e.path(), ec))) continue;
    if (!has_output_marker(e.path())) continue;
    const std::string digits = read_small(e.path() / kStageMarker);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = pid_t(std::stol(digits));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
  }
}

// renameat2(RENAME_EXCHANGE): swaps two paths atomically. Returns false (errno set) where the filesystem does
// not support it (EINVAL) or the kernel is too old (ENOSYS).
bool exchange_paths(const fs::path& a, const fs::path& b) {
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
}

}  // namespace

StagedDir::StagedDir(fs::path dst, bool force, const std::vector<fs::path>& protect)
    : dst_(std::move(dst)), force_(force) {
  // "out/" -> "out"; "/" and "." have no name to stage beside (and "/" used to loop here forever).
  while (!dst_.empty() && !dst_.has_filename() && dst_.has_relative_path()) dst_ = dst_.parent_path();
  HLWQ_CHECK(!dst_.empty(), "output path is empty");
  HLWQ_CHECK(dst_.has_filename() && dst_.filename() != "." && dst_.filename() != "..",
             "{}: the output must name a directory to create (not /, . or ..)", dst_.string());
  std::error_code ec;
  // --force removes dst at commit, so it must never be (or contain) the input: `quantize SRC SRC --force` or
  // `quantize SRC SRC/.. --force` would delete the model being read. Canonical paths see through "..", "."
  // and symlinks.
  const fs::path dst_canon = fs::weakly_canonical(dst_, ec);
  HLWQ_CHECK(!ec, "{}: cannot resolve the output path: {}", dst_.string(), ec.message());
  for (const fs::path& p : protect) {
    const fs::path pc = fs::weakly_canonical(p, ec);
    HLWQ_CHECK(!ec, "{}: cannot resolve the path: {}", p.string(), ec.message());
    HLWQ_CHECK(!is_ancestor_or_same(dst_canon, pc), "{}: output is {} or a directory containing it; refusing",
               dst_.string(), p.string());
  }
  check_replaceable();
  const fs::path parent = dst_.has_parent_path() ? dst_.parent_path() : fs::path(".");
  HLWQ_CHECK(fs::is_directory(parent), "{}: parent directory {} does not exist", dst_.string(), parent.string());
  remove_dead_stages(parent, dst_.filename().string());
  // A fresh name: create_directory fails rather than reuses, so nothing already there is ever removed.
  for (int k = 0; k < 1000 && stage_.empty(); ++k) {
    fs::path cand = dst_;
    cand += fmt::format(".partial-{}-{}", ::getpid(), k);
    if (fs::create_directory(cand, ec)) stage_ = cand;
    else HLWQ_CHECK(!ec || ec == std::errc::file_exists, "{}: cannot create the staging directory: {}", cand.string(),
                    ec.message());
  }
  HLWQ_CHECK(!stage_.empty(), "{}: cannot find a free staging directory name beside it", dst_.string());
  try {
    write_file(stage_ / kOutputMarker, std::string(kOutputMarkerText) + "\n");
    write_file(stage_ / kStageMarker, std::to_string(::getpid()));
  } catch (...) {
    fs::remove_all(stage_, ec);
    throw;
  }
}

void StagedDir::check_replaceable() const {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(dst_, ec);
  if (!fs::exists(st)) return;
  HLWQ_CHECK(force_, "{}: already exists (pass --force to replace it)", dst_.string());
  // --force replaces hlwq's own previous output (it carries the marker file) or an empty directory, nothing
  // else: a file, a symlink, or a directory hlwq did not write (a project, a home directory, a model downloaded
  // by hand) is refused rather than deleted.
  HLWQ_CHECK(fs::is_directory(st), "{}: exists and is not a directory; refusing to replace it even with --force",
             dst_.string());
  const bool empty = fs::is_empty(dst_, ec);
  HLWQ_CHECK(!ec, "{}: cannot list: {}", dst_.string(), ec.message());
  HLWQ_CHECK(empty || has_output_marker(dst_),
             "{}: exists, is not empty and was not written by hlwq (no {} marker); refusing to replace it even with "
             "--force (remove it yourself if it is disposable)",
             dst_.string(), kOutputMarker);
}

StagedDir::~StagedDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(stage_, ec);
  }
}

void StagedDir::commit() {
  std::error_code ec;
  // The stage becomes an output: drop its stage marker (so no cleanup ever mistakes it for a dead stage), then
  // sync its entries before the rename makes it visible.
  fs::remove(stage_ / kStageMarker, ec);
  HLWQ_CHECK(!ec, "{}: cannot remove {}: {}", stage_.string(), kStageMarker, ec.message());
  fsync_dir(stage_);
  const fs::path parent = dst_.has_parent_path() ? dst_.parent_path() : fs::path(".");
  if (!fs::exists(fs::symlink_status(dst_, ec))) {
    // RENAME_NOREPLACE: a dst that appeared meanwhile is not silently replaced.
    HLWQ_CHECK(::renameat2(AT_FDCWD, stage_.c_str(), AT_FDCWD, dst_.c_str(), RENAME_NOREPLACE) == 0 ||
                   (errno == EINVAL && ::rename(stage_.c_str(), dst_.c_str()) == 0),
               "{}: cannot move {} into place: {}", dst_.string(), stage_.string(), std::strerror(errno));
    committed_ = true;
    fsync_dir(parent);
    return;
  }
  check_replaceable();  // again: dst may have changed since the constructor looked
  // Atomic swap: at every instant dst is either the complete old output or the complete new one. Afterwards
  // the old output sits at the stage path and is removed; a crash before that leaves it there, intact.
  if (exchange_paths(stage_, dst_)) {
    committed_ = true;
    fsync_dir(parent);
    fs::remove_all(stage_, ec);
    return;
  }
  HLWQ_CHECK(errno == EINVAL || errno == ENOSYS, "{}: cannot swap in {}: {}", dst_.string(), stage_.string(),
             std::strerror(errno));
  // No RENAME_EXCHANGE on this filesystem: two renames. A crash between them leaves dst missing, but the
  // previous output is never lost: it stays complete at <dst>.old-<pid>, which the message names.
  fs::path old = dst_;
  old += fmt::format(".old-{}", ::getpid());
  fs::rename(dst_, old, ec);
  HLWQ_CHECK(!ec, "{}: cannot move the old output aside: {}", dst_.string(), ec.message());
  fs::rename(stage_, dst_, ec);
  if (ec) {
    std::error_code ec2;
    fs::rename(old, dst_, ec2);
    fail("{}: cannot move {} into place: {}{}", dst_.string(), stage_.string(), ec.message(),
         ec2 ? fmt::format("; the previous output is left at {} ({})", old.string(), ec2.message()) : "");
  }
  committed_ = true;
  fsync_dir(parent);
  fs::remove_all(old, ec);
}

}  // namespace hlwq
