// SafetensorsSet (src/io/safetensors_index.cpp): a sharded directory (model.safetensors.index.json)
// gives the same tensors as the single file; a missing shard, a tensor mapped to the wrong shard,
// a shard tensor the index omits and a pytorch_model.bin-only directory are refused naming them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/safetensors_index.h"
#include "tensor/random.h"
#include "testing/test_helpers.h"

using namespace sk;
using sk::testing::error_of;
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

bool has(const std::string& text, const std::string& phrase) { return text.find(phrase) != std::string::npos; }

}  // namespace

TEST(SafetensorsIndex, sharded_equals_single_file) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_st_index");
  Rng rng(2);
  io::NamedTensors all = {{"a", Tensor::randn({3, 4}, rng)}, {"b", Tensor::randn({5}, rng)}, {"c", Tensor::randn({2, 2}, rng)}};
  fs::create_directories(dir / "one");
  fs::create_directories(dir / "sharded");
  io::write_safetensors((dir / "one/model.safetensors").string(), all);
  io::write_safetensors((dir / "sharded/model-00001-of-00002.safetensors").string(), {all[0], all[2]});
  io::write_safetensors((dir / "sharded/model-00002-of-00002.safetensors").string(), {all[1]});
  const std::string index = R"({"metadata":{"total_size":84},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
                            R"("b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}})";
  write_text(dir / "sharded/model.safetensors.index.json", index);
  const io::SafetensorsSet one = io::SafetensorsSet::open((dir / "one").string());
  const io::SafetensorsSet sh = io::SafetensorsSet::open((dir / "sharded").string());
  EXPECT_EQ(one.num_shards(), 1u);
  EXPECT_EQ(sh.num_shards(), 2u);
  ASSERT_EQ(one.names(), sh.names());
  for (const auto& n : one.names())
    EXPECT_EQ(one.file_of(n).tensor(n).to_vector(), sh.file_of(n).tensor(n).to_vector()) << n;

  // Broken indexes.
  write_text(dir / "sharded/model.safetensors.index.json",
             R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00003-of-00003.safetensors"}})");
  std::string e = error_of([&] { io::SafetensorsSet::open((dir / "sharded").string()); });
  EXPECT_TRUE(has(e, "model-00003-of-00003.safetensors")) << e;
  EXPECT_TRUE(has(e, "missing")) << e;
  write_text(dir / "sharded/model.safetensors.index.json",
             R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})");
  e = error_of([&] { io::SafetensorsSet::open((dir / "sharded").string()); });
  EXPECT_TRUE(has(e, "'a'") && has(e, "does not hold it")) << e;
  write_text(dir / "sharded/model.safetensors.index.json",
             R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})");
  e = error_of([&] { io::SafetensorsSet::open((dir / "sharded").string()); });
  EXPECT_TRUE(has(e, "'c'") && has(e, "does not map")) << e;
  write_text(dir / "sharded/model.safetensors.index.json", R"({"metadata":{}})");
  e = error_of([&] { io::SafetensorsSet::open((dir / "sharded").string()); });
  EXPECT_TRUE(has(e, "weight_map")) << e;
  e = error_of([&] { one.file_of("zz"); });
  EXPECT_TRUE(has(e, "'zz'")) << e;
  fs::remove_all(dir);
}

TEST(SafetensorsIndex, pytorch_bin_directory_is_refused_with_how_to_convert) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_st_index_bin");
  write_text(dir / "pytorch_model.bin", std::string("PK\x03\x04", 4) + std::string(100, 'x'));
  std::string e = error_of([&] { io::SafetensorsSet::open(dir.string()); });
  EXPECT_TRUE(has(e, "pytorch_model.bin") && has(e, "safe_serialization=True")) << e;
  e = error_of([&] { io::SafetensorsSet::open((dir / "pytorch_model.bin").string()); });
  EXPECT_TRUE(has(e, "zip archive")) << e;
  fs::remove_all(dir);
}
