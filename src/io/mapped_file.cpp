#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/error.h"

namespace hlwq {

namespace {

// Process-wide by necessity: a signal handler can only reach global state. Slots are claimed and released
// with atomics; the handler only reads them (async-signal-safe).
struct MapSlot {
  std::atomic<uintptr_t> begin{0}, end{0};
  std::atomic<const char*> path{nullptr};
};
constexpr size_t kMapSlots = 4096;  // more live mappings than this just lose the friendly message
MapSlot g_map_slots[kMapSlots];
struct sigaction g_prev_sigbus;

void write_str(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    const ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= size_t(w);
  }
}

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (const MapSlot& s : g_map_slots) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire), e = s.end.load(std::memory_order_acquire);
    if (b == 0 || addr < b || addr >= e) continue;
    const char* path = s.path.load(std::memory_order_acquire);
    write_str("hlwq: error: ");
    write_str(path ? path : "a mapped file");
    write_str(": the file shrank (truncated or replaced) while hlwq was reading it through a memory map; "
              "stopping. Do not modify model files while hlwq uses them.\n");
    ::_exit(3);
  }
  // Not one of ours: restore what was there before and return, so the fault repeats under that disposition.
  ::sigaction(SIGBUS, &g_prev_sigbus, nullptr);
  (void)sig;
  (void)ctx;
}

void install_sigbus_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_prev_sigbus);
  });
}

MapSlot* register_mapping(const uint8_t* data, size_t size, const std::string& path) {
  install_sigbus_handler();
  for (MapSlot& s : g_map_slots) {
    uintptr_t expected = 0;
    if (!s.begin.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;  // 1: claimed
    s.path.store(path.c_str(), std::memory_order_release);
    s.end.store(reinterpret_cast<uintptr_t>(data) + size, std::memory_order_release);
    s.begin.store(reinterpret_cast<uintptr_t>(data), std::memory_order_release);
    return &s;
  }
  return nullptr;
}

void unregister_mapping(MapSlot* s) {
  if (!s) return;
  s->end.store(0, std::memory_order_release);
  s->path.store(nullptr, std::memory_order_release);
  s->begin.store(0, std::memory_order_release);
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: a FIFO named like a shard must be refused, not waited on forever (fstat below rejects it).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  HLWQ_CHECK(fd >= 0, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    HLWQ_CHECK(p != MAP_FAILED, "{}: mmap of {} bytes failed: {}", path, size_, std::strerror(err));
    data_ = static_cast<const uint8_t*>(p);
    slot_ = register_mapping(data_, size_, path_);
  } else {
    ::close(fd);
  }
}

void MappedFile::release(size_t offset, size_t len) const {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  size_t begin = (offset + page - 1) / page * page;
  size_t end = std::min(offset + len, size_) / page * page;
  if (data_ && end > begin) ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  unregister_mapping(static_cast<MapSlot*>(slot_));
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace hlwq
