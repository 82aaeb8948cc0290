// Small POSIX file helpers shared by the writers and readers that must be crash-safe: full writes
// that retry short writes, fsync of files and directories, a read-only memory-mapped file, and a
// whole-file atomic replace (temporary file in the same directory, fsync, rename, fsync of the
// directory). Every error is an sk::Error that starts with the caller's label (usually the path).
// Users: data/shard.cpp, io/safetensors.cpp, train/checkpoint.cpp. Tested through them
// (tests/data/test_shard.cpp, tests/io/, tests/train/test_checkpoint_kill.cpp).
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace sk::util {

std::string errno_text();  // strerror(errno)

// Writes all of [data, data + n) at fd's position / at `offset` (retrying short writes and EINTR).
void write_all(int fd, const void* data, size_t n, const std::string& label);
void pwrite_all(int fd, const void* data, size_t n, off_t offset, const std::string& label);
// fsync(fd), throwing "<label>: fsync failed: ...".
void fsync_fd(int fd, const std::string& label);
// fsync of a directory, so that renames and new entries in it are durable. Best effort: some
// filesystems refuse to fsync directories; that is not an error.
void fsync_dir(const std::filesystem::path& dir);

// Replaces `path` with `bytes` atomically: readers see the old file or the new one, never a mix.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);
// The whole file as a string; throws "<path>: cannot read: ...".
std::string read_file(const std::filesystem::path& path);

// A regular file mapped read-only. Move-only; unmaps on destruction. An empty file maps to
// (nullptr, 0).
class MappedFile {
 public:
  // Throws "<label>: cannot open: ..." (label: the path when empty).
  static MappedFile open(const std::string& path, const std::string& label = "");
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return static_cast<const uint8_t*>(map_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sk::util
