#include "io/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "io/json_util.h"

namespace hlwq {

namespace {

const char* file_type(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

template <class Json>
Json parse_json(const std::filesystem::path& path, size_t max_bytes) {
  const std::string text = read_regular_file(path, max_bytes);
  json_check_depth(text.data(), text.data() + text.size(), kMaxJsonNesting, path.string());
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& ex) {
    fail("{}: not valid JSON: {}", path.string(), ex.what());
  }
}

}  // namespace

std::string read_regular_file(const std::filesystem::path& path, size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  HLWQ_CHECK(fd >= 0, "{}: cannot open: {}", path.string(), std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  HLWQ_CHECK(::fstat(fd, &st) == 0, "{}: cannot stat: {}", path.string(), std::strerror(errno));
  HLWQ_CHECK(S_ISREG(st.st_mode), "{}: is {}; only regular files are read", path.string(), file_type(st.st_mode));
  HLWQ_CHECK(uint64_t(st.st_size) <= max_bytes, "{}: {} bytes is over the {} byte limit for this file", path.string(),
             uint64_t(st.st_size), max_bytes);
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (true) {
    if (got == out.size()) {
      // The file may have grown since fstat; read on, within the limit, so nothing is silently cut.
      HLWQ_CHECK(out.size() < max_bytes, "{}: grew past the {} byte limit while being read", path.string(), max_bytes);
      out.resize(std::min(max_bytes, std::max<size_t>(out.size() * 2, 4096)));
    }
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    HLWQ_CHECK(n >= 0, "{}: read failed: {}", path.string(), std::strerror(errno));
    if (n == 0) break;
    got += size_t(n);
  }
  out.resize(got);
  return out;
}

bool regular_file_exists(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    HLWQ_CHECK(errno == ENOENT || errno == ENOTDIR, "{}: cannot stat: {}", path.string(), std::strerror(errno));
    return false;
  }
  HLWQ_CHECK(S_ISREG(st.st_mode), "{}: is {}; only regular files are read", path.string(), file_type(st.st_mode));
  return true;
}

nlohmann::json read_json_file(const std::filesystem::path& path, size_t max_bytes) {
  return parse_json<nlohmann::json>(path, max_bytes);
}

nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path, size_t max_bytes) {
  return parse_json<nlohmann::ordered_json>(path, max_bytes);
}

}  // namespace hlwq
