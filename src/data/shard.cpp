// Token shards (shard.h): byte-level validation, read-only mmap, atomic streaming writer.
// Tests: tests/data/test_shard.cpp; fuzzed by fuzz/fuzz_shard_reader.cpp (parse_shard only).
#include "data/shard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/check.h"
#include "util/file_io.h"

namespace sk::data {

namespace {

int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::atomic<uint64_t> g_tmp_counter{0};

}  // namespace

int shard_version_for_vocab(size_t vocab_size) { return vocab_size <= 65536 ? 1 : 2; }

uint32_t ShardView::token(int64_t i) const {
  if (version == 1) {
    uint16_t v;
    std::memcpy(&v, body + 2 * i, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, body + 4 * i, 4);
  return v;
}

void ShardView::copy_tokens(int64_t start, int64_t count, int32_t* out, const std::string& name) const {
  SK_CHECK(start >= 0 && count >= 0 && start <= num_tokens && count <= num_tokens - start, "shard ", name,
           ": tokens [", start, ", ", start + count, ") out of range (the shard has ", num_tokens, " tokens)");
  if (version == 1) {
    const uint8_t* p = body + 2 * start;
    for (int64_t i = 0; i < count; ++i) {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);
      out[i] = v;
    }
    return;
  }
  const uint8_t* p = body + 4 * start;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t v;
    std::memcpy(&v, p + 4 * i, 4);
    SK_CHECK(v <= 2147483647u, "shard ", name, ": token ", start + i, " has id ", v, ", above the int32 range");
    out[i] = static_cast<int32_t>(v);
  }
}

ShardView parse_shard(const uint8_t* data, size_t size, const std::string& name) {
  SK_CHECK(size >= static_cast<size_t>(kShardHeaderBytes), "shard ", name, ": truncated: ", size,
           " bytes, shorter than the ", kShardHeaderBytes, "-byte header");
  const int32_t magic = load_i32(data);
  SK_CHECK(magic == kShardMagic, "shard ", name, ": bad magic ", magic, " (expected ", kShardMagic,
           "; not a token shard)");
  const int32_t version = load_i32(data + 4);
  SK_CHECK(version == 1 || version == 2, "shard ", name, ": bad version ", version,
           " (expected 1 = uint16 tokens or 2 = uint32 tokens)");
  const int32_t count = load_i32(data + 8);
  SK_CHECK(count >= 0, "shard ", name, ": bad token count ", count, " in the header (negative)");
  const int64_t expected = kShardHeaderBytes + static_cast<int64_t>(count) * shard_token_bytes(version);
  const auto actual = static_cast<int64_t>(size);
  SK_CHECK(actual >= expected, "shard ", name, ": truncated: the header says ", count, " tokens (", expected,
           " bytes) but the file has ", actual, " bytes");
  SK_CHECK(actual == expected, "shard ", name, ": size mismatch: the header says ", count, " tokens (", expected,
           " bytes) but the file has ", actual, " bytes (", actual - expected, " trailing)");
  ShardView v;
  v.version = version;
  v.num_tokens = count;
  v.body = data + kShardHeaderBytes;
  return v;
}

// ---- Shard ---------------------------------------------------------------------------------------

Shard Shard::open(const std::string& path) {
  Shard s;
  s.path_ = path;
  s.file_ = util::MappedFile::open(path, "shard " + path);
  s.view_ = parse_shard(s.file_.data(), s.file_.size(), path);
  return s;
}

std::vector<uint32_t> Shard::tokens() const {
  std::vector<uint32_t> out(static_cast<size_t>(num_tokens()));
  for (int64_t i = 0; i < num_tokens(); ++i) out[i] = token(i);
  return out;
}

// ---- ShardWriter ---------------------------------------------------------------------------------

ShardWriter::ShardWriter(const std::string& path, int version) : path_(path), version_(version) {
  SK_CHECK(version == 1 || version == 2, "shard ", path, ": cannot write version ", version, " (1 or 2)");
  tmp_path_ = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(g_tmp_counter++);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SK_CHECK(fd_ >= 0, "shard ", path, ": cannot create ", tmp_path_, ": ", util::errno_text());
  // Placeholder header (count 0): a crash leaves an invalid temporary, never a visible shard.
  std::vector<int32_t> header(kShardHeaderInts, 0);
  header[0] = kShardMagic;
  header[1] = version_;
  try {
    util::write_all(fd_, header.data(), kShardHeaderBytes, "shard " + path_);
  } catch (...) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
    throw;
  }
  buf_.reserve(1 << 20);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(tmp_path_.c_str());
}

void ShardWriter::write(const uint32_t* tokens, size_t count) {
  SK_CHECK(!finished_, "shard ", path_, ": write after finish()");
  SK_CHECK(static_cast<int64_t>(count) <= kShardMaxTokens - count_, "shard ", path_, ": more than ", kShardMaxTokens,
           " tokens (the header stores the count as int32)");
  if (version_ == 1) {  // validate first: a throwing write() leaves the writer unchanged
    for (size_t i = 0; i < count; ++i)
      SK_CHECK(tokens[i] <= 65535u, "shard ", path_, ": token id ", tokens[i],
               " does not fit version 1 (uint16); use version 2");
  }
  const size_t width = static_cast<size_t>(shard_token_bytes(version_));
  for (size_t i = 0; i < count; ++i) {
    const uint32_t t = tokens[i];
    const size_t at = buf_.size();
    buf_.resize(at + width);
    if (version_ == 1) {
      const auto v = static_cast<uint16_t>(t);
      std::memcpy(buf_.data() + at, &v, 2);
    } else {
      std::memcpy(buf_.data() + at, &t, 4);
    }
    if (buf_.size() >= (1u << 20)) flush_buffer();
  }
  count_ += static_cast<int64_t>(count);
}

void ShardWriter::flush_buffer() {
  if (buf_.empty()) return;
  util::write_all(fd_, buf_.data(), buf_.size(), "shard " + path_);
  buf_.clear();
}

int64_t ShardWriter::finish() {
  SK_CHECK(!finished_, "shard ", path_, ": finish() called twice");
  flush_buffer();
  const int32_t count = static_cast<int32_t>(count_);
  util::pwrite_all(fd_, &count, 4, 8, "shard " + path_);
  util::fsync_fd(fd_, "shard " + path_);
  SK_CHECK(::close(fd_) == 0, "shard ", path_, ": close failed: ", util::errno_text());
  fd_ = -1;
  SK_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0, "shard ", path_, ": cannot rename ", tmp_path_,
           " onto it: ", util::errno_text());
  finished_ = true;
  util::fsync_dir(std::filesystem::path(path_).parent_path());  // make the rename durable
  return kShardHeaderBytes + count_ * shard_token_bytes(version_);
}

std::string shard_file_name(const std::string& name, const std::string& split, int64_t index) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%06lld", static_cast<long long>(index));
  return name + "_" + split + "_" + digits + ".bin";
}

std::vector<std::string> find_shards(const std::string& dir, const std::string& name, const std::string& split) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SK_CHECK(fs::is_directory(dir, ec), "shards: ", dir, " is not a directory");
  const std::string prefix = name + "_" + split + "_";
  std::vector<std::pair<int64_t, std::string>> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (f.size() <= prefix.size() + 4 || f.compare(0, prefix.size(), prefix) != 0 ||
        f.compare(f.size() - 4, 4, ".bin") != 0)
      continue;
    const std::string digits = f.substr(prefix.size(), f.size() - prefix.size() - 4);
    if (digits.size() < 6 || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    found.emplace_back(std::stoll(digits), e.path().string());
  }
  SK_CHECK(!found.empty(), "shards: no ", prefix, "*.bin files in ", dir);
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [i, p] : found) out.push_back(std::move(p));
  return out;
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version) {
  if (version == 0) {
    uint32_t max_id = 0;
    for (uint32_t t : tokens) max_id = std::max(max_id, t);
    version = max_id <= 65535u ? 1 : 2;
  }
  ShardWriter w(path, version);
  w.write(tokens);
  w.finish();
}

}  // namespace sk::data
