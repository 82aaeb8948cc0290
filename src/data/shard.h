// Token shards: the llm.c file format, validated, memory-mapped for reading, written atomically.
//
// Layout (little-endian):
//   header  256 x int32 (1024 bytes): [0] magic 20240520, [1] version, [2] token count, rest 0
//   body    token count x uint16 (version 1) or x uint32 (version 2, vocabularies over 65536 ids)
// The file size must be exactly 1024 + count * token_bytes. Offsets and counts are 64-bit in the
// API; the header stores the count as int32 (llm.c), so one shard holds at most 2^31 - 1 tokens.
//
// parse_shard() validates a byte buffer (used on mmapped files and by the fuzzer,
// fuzz/fuzz_shard_reader.cpp); every failure throws sk::Error naming the file and what is wrong:
// "truncated", "bad magic", "bad version", "size mismatch". ShardWriter writes to a temporary
// file in the target directory, fsyncs and renames, so a shard is never half-visible.
// Tests: tests/data/test_shard.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "util/file_io.h"

namespace sk::data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;
inline constexpr int64_t kShardMaxTokens = 2147483647;  // header[2] is int32

// 1 (uint16 tokens) when every id fits 16 bits (vocab_size <= 65536), else 2 (uint32 tokens).
int shard_version_for_vocab(size_t vocab_size);
inline int shard_token_bytes(int version) { return version == 1 ? 2 : 4; }

// A validated view of shard bytes (does not own them).
struct ShardView {
  int version = 0;          // 1 or 2
  int64_t num_tokens = 0;   // header[2]
  const uint8_t* body = nullptr;  // num_tokens * shard_token_bytes(version) bytes

  // Token i (no bounds check; unaligned-safe).
  uint32_t token(int64_t i) const;
  // Copies tokens [start, start + count) widened to int32 into out (bounds checked).
  void copy_tokens(int64_t start, int64_t count, int32_t* out, const std::string& name) const;
};

// Validates header and size of `size` bytes at `data`; `name` (a file name) appears in every
// error message. Never reads outside [data, data + size).
ShardView parse_shard(const uint8_t* data, size_t size, const std::string& name);

// A shard file mapped read-only (mmap). Move-only; unmaps on destruction.
class Shard {
 public:
  // Opens and validates `path`; throws sk::Error naming the path on any problem.
  static Shard open(const std::string& path);
  Shard(Shard&& o) noexcept = default;  // the mapping (and view_'s pointers into it) moves along
  Shard& operator=(Shard&& o) noexcept = default;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const std::string& path() const { return path_; }
  int version() const { return view_.version; }
  int64_t num_tokens() const { return view_.num_tokens; }
  uint32_t token(int64_t i) const { return view_.token(i); }
  // Tokens [start, start + count) as int32 into out; throws if out of range or an id > INT32_MAX.
  void copy_tokens(int64_t start, int64_t count, int32_t* out) const { view_.copy_tokens(start, count, out, path_); }
  std::vector<uint32_t> tokens() const;  // all tokens (tests, tools)

 private:
  Shard() = default;
  std::string path_;
  util::MappedFile file_;
  ShardView view_;
};

// Streams tokens into a shard: a temporary file "<path>.tmp-<pid>-<n>" in the same directory,
// header rewritten with the final count by finish(), then fsync, rename onto `path` and fsync
// of the directory. Destroyed without finish() (an error, an exception), the temporary is removed
// and `path` is untouched.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, int version);
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  ~ShardWriter();

  // Appends tokens; throws if an id does not fit the version or the shard would pass 2^31 - 1.
  void write(const uint32_t* tokens, size_t count);
  void write(const std::vector<uint32_t>& tokens) { write(tokens.data(), tokens.size()); }
  int64_t num_tokens() const { return count_; }
  // Completes the shard and makes it visible at path(). Returns its size in bytes.
  int64_t finish();
  const std::string& path() const { return path_; }

 private:
  void flush_buffer();
  std::string path_, tmp_path_;
  int version_;
  int fd_ = -1;
  int64_t count_ = 0;
  std::vector<uint8_t> buf_;
  bool finished_ = false;
};

// File naming shared by `sparsek prepare` and the loader (llm.c style):
//   NAME_val_000000.bin, NAME_val_000001.bin, ..., NAME_train_000000.bin, ...
std::string shard_file_name(const std::string& name, const std::string& split, int64_t index);
// The shards DIR/NAME_SPLIT_<6+ digits>.bin, sorted by index; throws naming DIR if there are none.
std::vector<std::string> find_shards(const std::string& dir, const std::string& name, const std::string& split);

// Writes a whole shard at once (version 0: the smallest that holds every id). Atomic as above.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version = 0);

}  // namespace sk::data
