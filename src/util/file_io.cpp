// POSIX file helpers (file_io.h).
#include "util/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "util/check.h"

namespace sk::util {

namespace {
std::atomic<uint64_t> g_tmp_counter{0};
}

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const void* data, size_t n, const std::string& label) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    SK_CHECK(w > 0, label, ": write failed: ", errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void pwrite_all(int fd, const void* data, size_t n, off_t offset, const std::string& label) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, offset);
    if (w < 0 && errno == EINTR) continue;
    SK_CHECK(w > 0, label, ": write failed: ", errno_text());
    p += w;
    n -= static_cast<size_t>(w);
    offset += w;
  }
}

void fsync_fd(int fd, const std::string& label) { SK_CHECK(::fsync(fd) == 0, label, ": fsync failed: ", errno_text()); }

void fsync_dir(const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? std::filesystem::path(".") : dir;
  const int dfd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  const std::string tmp = path.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(g_tmp_counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SK_CHECK(fd >= 0, path.string(), ": cannot create ", tmp, ": ", errno_text());
  try {
    write_all(fd, bytes.data(), bytes.size(), path.string());
    fsync_fd(fd, path.string());
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    SK_FAIL(path.string(), ": cannot rename ", tmp, " onto it: ", why);
  }
  fsync_dir(path.parent_path());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  SK_CHECK(f.good(), path.string(), ": cannot read: ", errno_text());
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

MappedFile MappedFile::open(const std::string& path, const std::string& label_arg) {
  const std::string& label = label_arg.empty() ? path : label_arg;
  MappedFile m;
  m.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SK_CHECK(fd >= 0, label, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string why = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
    ::close(fd);
    SK_FAIL(label, ": cannot open: ", why);
  }
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ == 0) {
    ::close(fd);
    return m;
  }
  void* map = ::mmap(nullptr, m.size_, PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  SK_CHECK(map != MAP_FAILED, label, ": mmap of ", m.size_, " bytes failed: ", std::strerror(map_errno));
  m.map_ = map;
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    size_ = o.size_;
    o.map_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
  if (map_) ::munmap(map_, size_);
  map_ = nullptr;
  size_ = 0;
}

}  // namespace sk::util
