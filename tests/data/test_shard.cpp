// Token shards (src/data/shard.h): v1/v2 round trips, the automatic version, atomic writes, and
// each corruption (bad magic, truncated header or body, bad version, size mismatch) failing with
// a message that names the file and the problem; shard discovery by name and split.
#include <gtest/gtest.h>

#include "testing/test_helpers.h"
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/shard.h"
#include "util/check.h"

using namespace sk;
using namespace sk::data;
namespace fs = std::filesystem;

using sk::testing::error_of;

namespace {

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sk::testing::fresh_test_dir("sk_test_shard");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& f) const { return (dir_ / f).string(); }
  fs::path dir_;
};

std::vector<uint8_t> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}


}  // namespace

TEST_F(ShardTest, round_trip_v1) {
  const std::vector<uint32_t> toks = {0, 1, 50256, 65535, 7, 7, 12345};
  const std::string p = path("a_train_000000.bin");
  write_shard(p, toks, 1);
  EXPECT_EQ(fs::file_size(p), static_cast<uintmax_t>(1024 + 2 * toks.size()));
  Shard s = Shard::open(p);
  EXPECT_EQ(s.version(), 1);
  EXPECT_EQ(s.num_tokens(), static_cast<int64_t>(toks.size()));
  EXPECT_EQ(s.tokens(), toks);
  std::vector<int32_t> out(3);
  s.copy_tokens(2, 3, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{50256, 65535, 7}));
  EXPECT_NE(error_of([&] { s.copy_tokens(5, 3, out.data()); }).find("out of range"), std::string::npos);
  // llm.c header layout
  const auto bytes = read_bytes(p);
  int32_t h[3];
  std::memcpy(h, bytes.data(), 12);
  EXPECT_EQ(h[0], 20240520);
  EXPECT_EQ(h[1], 1);
  EXPECT_EQ(h[2], 7);
}

TEST_F(ShardTest, round_trip_v2_and_auto_version) {
  const std::vector<uint32_t> toks = {0, 65536, 100276, 2147483647u, 3};
  const std::string p = path("b.bin");
  write_shard(p, toks);  // version 0: chosen from the largest id
  EXPECT_EQ(fs::file_size(p), static_cast<uintmax_t>(1024 + 4 * toks.size()));
  Shard s = Shard::open(p);
  EXPECT_EQ(s.version(), 2);
  EXPECT_EQ(s.tokens(), toks);
  write_shard(path("c.bin"), {1, 2, 3});
  EXPECT_EQ(Shard::open(path("c.bin")).version(), 1);
  EXPECT_EQ(shard_version_for_vocab(50257), 1);
  EXPECT_EQ(shard_version_for_vocab(65536), 1);
  EXPECT_EQ(shard_version_for_vocab(65537), 2);
  // Ids above int32 cannot become i32 batch entries.
  write_shard(path("d.bin"), {4000000000u}, 2);
  Shard d = Shard::open(path("d.bin"));
  int32_t one = 0;
  EXPECT_NE(error_of([&] { d.copy_tokens(0, 1, &one); }).find("above the int32 range"), std::string::npos);
}

TEST_F(ShardTest, empty_shard_is_valid) {
  write_shard(path("e.bin"), {}, 1);
  EXPECT_EQ(Shard::open(path("e.bin")).num_tokens(), 0);
}

TEST_F(ShardTest, writer_rejects_ids_too_large_for_v1) {
  const std::string msg = error_of([&] { write_shard(path("x.bin"), {1, 65536}, 1); });
  EXPECT_NE(msg.find("x.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("65536"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path("x.bin")));
}

TEST_F(ShardTest, unfinished_writer_leaves_nothing) {
  {
    ShardWriter w(path("u.bin"), 1);
    w.write({1, 2, 3});
  }  // no finish(): e.g. an exception unwinding
  EXPECT_TRUE(fs::is_empty(dir_));
  ShardWriter w(path("v.bin"), 2);
  w.write({1, 2});
  EXPECT_FALSE(fs::exists(path("v.bin")));  // not visible before finish()
  EXPECT_EQ(w.finish(), 1024 + 8);
  EXPECT_EQ(Shard::open(path("v.bin")).num_tokens(), 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);  // no temporaries
}

TEST_F(ShardTest, bad_magic_names_file) {
  const std::string p = path("magic.bin");
  write_shard(p, {1, 2, 3}, 1);
  auto b = read_bytes(p);
  b[0] ^= 0xff;
  write_bytes(p, b);
  const std::string msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad magic"), std::string::npos) << msg;
}

TEST_F(ShardTest, truncated_header_and_body_name_file) {
  const std::string p = path("trunc.bin");
  write_shard(p, {1, 2, 3, 4}, 1);
  auto b = read_bytes(p);
  write_bytes(p, std::vector<uint8_t>(b.begin(), b.end() - 2));  // one token short
  std::string msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 tokens"), std::string::npos) << msg;
  write_bytes(p, std::vector<uint8_t>(b.begin(), b.begin() + 100));  // inside the header
  msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated: 100 bytes"), std::string::npos) << msg;
  write_bytes(p, {});
  msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find("truncated: 0 bytes"), std::string::npos) << msg;
}

TEST_F(ShardTest, wrong_version_names_file) {
  const std::string p = path("ver.bin");
  write_shard(p, {1, 2}, 1);
  auto b = read_bytes(p);
  b[4] = 3;
  write_bytes(p, b);
  const std::string msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad version 3"), std::string::npos) << msg;
}

TEST_F(ShardTest, size_mismatch_names_file) {
  const std::string p = path("size.bin");
  write_shard(p, {1, 2}, 2);
  auto b = read_bytes(p);
  b.push_back(0);
  write_bytes(p, b);
  std::string msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("size mismatch"), std::string::npos) << msg;
  // A v2 file relabelled as v1: twice the bytes the header asks for.
  b.pop_back();
  b[4] = 1;
  write_bytes(p, b);
  msg = error_of([&] { Shard::open(p); });
  EXPECT_NE(msg.find("size mismatch"), std::string::npos) << msg;
}

TEST_F(ShardTest, missing_file_and_directory) {
  std::string msg = error_of([&] { Shard::open(path("nope.bin")); });
  EXPECT_NE(msg.find("nope.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
  msg = error_of([&] { Shard::open(dir_.string()); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

TEST_F(ShardTest, parse_from_memory) {
  std::vector<uint8_t> b(1024 + 6, 0);
  const int32_t h[3] = {20240520, 1, 3};
  std::memcpy(b.data(), h, 12);
  b[1024] = 5;
  b[1026] = 0x01;
  b[1027] = 0x01;
  const ShardView v = parse_shard(b.data(), b.size(), "mem");
  EXPECT_EQ(v.num_tokens, 3);
  EXPECT_EQ(v.token(0), 5u);
  EXPECT_EQ(v.token(1), 257u);
  const int32_t neg = -1;
  std::memcpy(b.data() + 8, &neg, 4);
  EXPECT_NE(error_of([&] { parse_shard(b.data(), b.size(), "mem"); }).find("mem: bad token count -1"),
            std::string::npos);
}

TEST_F(ShardTest, find_shards_sorted_by_index) {
  for (int i : {2, 0, 10, 1}) write_shard(path(shard_file_name("corp", "train", i)), {1, 2});
  write_shard(path(shard_file_name("corp", "val", 0)), {1, 2});
  write_shard(path("corp_train_x.bin"), {1});
  write_shard(path("other_train_000000.bin"), {1});
  const auto found = find_shards(dir_.string(), "corp", "train");
  ASSERT_EQ(found.size(), 4u);
  EXPECT_EQ(fs::path(found[0]).filename(), "corp_train_000000.bin");
  EXPECT_EQ(fs::path(found[3]).filename(), "corp_train_000010.bin");
  EXPECT_EQ(find_shards(dir_.string(), "corp", "val").size(), 1u);
  const std::string msg = error_of([&] { find_shards(dir_.string(), "corp", "test"); });
  EXPECT_NE(msg.find("corp_test_*.bin"), std::string::npos) << msg;
}
