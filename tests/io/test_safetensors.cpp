// Safetensors (src/io/safetensors.cpp): round trip of every supported dtype with metadata, the
// exact bytes of a small file written by hand from the format description, alignment, and the
// reference reader's checks on malformed files (each error names the file and the problem);
// random corruptions never crash the reader.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/safetensors.h"
#include "tensor/random.h"
#include "testing/test_helpers.h"

using namespace sk;
using sk::testing::error_of;

namespace {

std::string with_length(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// The error parse_safetensors gives for `bytes` ("" if it parses).
std::string parse_error(const std::string& bytes) {
  return error_of([&] { io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "f.st"); });
}

void expect_rejected(const std::string& bytes, const std::string& phrase) {
  const std::string e = parse_error(bytes);
  EXPECT_NE(e.find("f.st"), std::string::npos) << e;
  EXPECT_NE(e.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << e;
}

}  // namespace

TEST(Safetensors, round_trip_every_dtype_with_metadata) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_safetensors");
  Rng rng(11);
  io::NamedTensors ts = {
      {"a.bf16", Tensor::randn({3, 5}, rng, DType::BF16)},
      {"b.f32", Tensor::randn({4, 2, 3}, rng, DType::F32)},
      {"c.f64", Tensor::randn({7}, rng, DType::F64)},
      {"d.i32", Tensor::randint({2, 2}, rng, 1000, DType::I32)},
      {"e.i64", Tensor::from_ints({-5, int64_t(1) << 40, 3}, {3}, DType::I64)},
      {"f.u16", Tensor::randint({5}, rng, 60000, DType::U16)},
      {"g.scalar", Tensor::full({}, 2.5, DType::F32)},
      {"h.empty", Tensor::zeros({0, 4}, DType::F32)},
  };
  const io::StringMap meta = {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}};
  const std::string path = (dir / "x.safetensors").string();
  io::write_safetensors(path, ts, meta, /*sync=*/true);
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.entries().size(), ts.size());
  for (const auto& [name, t] : ts) {
    Tensor back = f.tensor(name);
    EXPECT_EQ(back.dtype(), t.dtype()) << name;
    EXPECT_EQ(back.shape(), t.shape()) << name;
    EXPECT_EQ(back.to_vector(), t.to_vector()) << name;
    // Each tensor's bytes are aligned to its element size in the file.
    const auto [bytes, n] = f.raw(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(bytes) % dtype_size(t.dtype()), 0u) << name;
  }
  // Same bytes from the in-memory writer; header length + 8 is a multiple of 8.
  const std::string bytes = io::safetensors_bytes(ts, meta);
  std::ifstream in(path, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes, on_disk);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, known_bytes_of_a_small_file) {
  // Written by hand from the format: F32 [2] = {1, -2} and I64 [1] = {7}; I64 first (larger
  // elements first), header padded with spaces to a multiple of 8.
  io::NamedTensors ts = {{"w", Tensor::from_vector({1.0, -2.0}, {2}, DType::F32)},
                         {"n", Tensor::from_ints({7}, {1}, DType::I64)}};
  std::string header = R"({"n":{"data_offsets":[0,8],"dtype":"I64","shape":[1]},"w":{"data_offsets":[8,16],"dtype":"F32","shape":[2]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data(16, '\0');
  const int64_t seven = 7;
  const float w[2] = {1.0f, -2.0f};
  std::memcpy(data.data(), &seven, 8);
  std::memcpy(data.data() + 8, w, 8);
  EXPECT_EQ(io::safetensors_bytes(ts), with_length(header, data));
  EXPECT_EQ(parse_error(with_length(header, data)), "");
}

TEST(Safetensors, reader_accepts_what_the_reference_accepts) {
  EXPECT_EQ(parse_error(with_length("{}")), "");
  EXPECT_EQ(parse_error(with_length("{}      ")), "");  // trailing spaces (padding)
  EXPECT_EQ(parse_error(with_length(R"({"__metadata__":null})")), "");
  // Other known dtypes validate; zero-size tensors at the same offset are fine.
  const std::string h = R"({"a":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"z":{"dtype":"F8_E4M3","shape":[0],"data_offsets":[6,6]},"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})";
  const std::string ok = with_length(h, std::string(8, 'x'));
  EXPECT_EQ(parse_error(ok), "");
  const io::SafetensorsLayout l = io::parse_safetensors(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "f");
  ASSERT_EQ(l.entries.size(), 3u);
  EXPECT_EQ(l.entries[0].name, "a");  // sorted by offset
  EXPECT_EQ(l.data_start, 8 + h.size());
}

TEST(Safetensors, malformed_files_are_rejected_naming_the_problem) {
  const std::string t = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  expect_rejected("", "truncated");
  expect_rejected(std::string(7, '\0'), "truncated");
  std::string huge(8, '\0');
  const uint64_t big = io::kSafetensorsMaxHeader + 1;
  std::memcpy(huge.data(), &big, 8);
  expect_rejected(huge + "{}", "above the limit");
  std::string longer = with_length("{}");
  longer[0] = 3;  // says 3 header bytes, 2 follow
  expect_rejected(longer, "truncated");
  expect_rejected(with_length("{\"\xff\":1}"), "UTF-8");
  expect_rejected(with_length(" {}"), "start with '{'");
  expect_rejected(with_length("{\"t\":"), "not a JSON object");
  expect_rejected(with_length("[]"), "start with '{'");
  expect_rejected(with_length("{} x"), "not a JSON object");
  expect_rejected(with_length(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", std::string(8, 0)),
                  "unknown dtype 'F33'");
  expect_rejected(with_length(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, 0)), "no dtype");
  expect_rejected(with_length(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, 0)),
                  "not a non-negative integer");
  expect_rejected(with_length(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", std::string(8, 0)),
                  "not a non-negative integer");
  expect_rejected(with_length(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", std::string(8, 0)),
                  "data_offsets [begin, end]");
  expect_rejected(with_length(R"({"t":[1]})"), "not an object");
  expect_rejected(with_length(R"({"__metadata__":{"k":1}})"), "__metadata__ value of 'k'");
  // Layout: data must start at 0, tensors must tile it, sizes must match dtype x shape.
  expect_rejected(with_length(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, 0)),
                  "holes or overlaps");
  expect_rejected(with_length(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                              std::string(20, 0)),
                  "holes or overlaps");
  expect_rejected(with_length(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              std::string(12, 0)),
                  "holes or overlaps");
  expect_rejected(with_length(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 0)),
                  "needs 12 bytes");
  expect_rejected(with_length(R"({"t":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", std::string(1, 0)),
                  "whole bytes");
  expect_rejected(with_length(R"({"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                              std::string(8, 0)),
                  "overflows");
  expect_rejected(with_length("{" + t + "}", std::string(6, 0)), "truncated");
  expect_rejected(with_length("{" + t + "}", std::string(9, 0)), "trailing bytes");
}

TEST(Safetensors, file_errors_name_the_file_and_tensor) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_safetensors_err");
  const std::string path = (dir / "m.safetensors").string();
  EXPECT_NE(error_of([&] { io::SafetensorsFile::open(path); }).find(path), std::string::npos);
  io::write_safetensors(path, {{"w", Tensor::ones({2, 3})}});
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  Tensor wrong_shape = Tensor::zeros({3, 2});
  EXPECT_NE(error_of([&] { f.read_into("w", wrong_shape); }).find("has shape (2, 3), expected (3, 2)"),
            std::string::npos);
  Tensor f64 = Tensor::zeros({2, 3}, DType::F64);
  EXPECT_NE(error_of([&] { f.read_into("w", f64); }).find("dtype F32, expected F64"), std::string::npos);
  f.read_into("w", f64, /*convert=*/true);
  EXPECT_EQ(f64.to_vector(), std::vector<double>(6, 1.0));
  const std::string missing = error_of([&] { f.tensor("nope"); });
  EXPECT_NE(missing.find(path), std::string::npos);
  EXPECT_NE(missing.find("'nope'"), std::string::npos);
  // A truncated copy on disk.
  const std::string cut = (dir / "cut.safetensors").string();
  std::filesystem::copy_file(path, cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) - 4);
  EXPECT_NE(error_of([&] { io::SafetensorsFile::open(cut); }).find("truncated"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, random_corruptions_never_crash) {
  Rng rng(5);
  const std::string good = io::safetensors_bytes(
      {{"a", Tensor::randn({3, 4}, rng)}, {"b", Tensor::from_ints({1, 2}, {2}, DType::I64)}}, {{"k", "v"}});
  int accepted = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string bad = good;
    const int edits = 1 + int(rng.below(3));
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng.below(bad.size());
      switch (rng.below(3)) {
        case 0: bad[at] = char(rng.below(256)); break;
        case 1: bad.erase(at, 1 + rng.below(4)); break;
        default: bad.insert(at, 1, char(rng.below(256))); break;
      }
      if (bad.empty()) break;
    }
    accepted += parse_error(bad).empty();
  }
  EXPECT_LT(accepted, 3000);  // most corruptions are caught (a changed data byte is still valid)
}

TEST(Safetensors, other_formats_are_named_with_how_to_convert) {
  // torch.save's zip archive, a legacy pickle (protocol 2) and a git-LFS pointer in place of the weights.
  const std::string zip = std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10) + std::string(40, 'z');
  expect_rejected(zip, "zip archive");
  expect_rejected(zip, "safe_serialization=True");
  const std::string pickle = std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15) + std::string(30, 'p');
  expect_rejected(pickle, "Python pickle");
  expect_rejected(pickle, "save_pretrained");
  const std::string lfs =
      "version https://git-lfs.github.com/spec/v1\noid sha256:4c1f0e3a5d\nsize 166029852\n";
  expect_rejected(lfs, "git-LFS pointer");
  expect_rejected(lfs, "git lfs pull");
  // A real safetensors file whose header length's first byte is 0x80 (128-byte header) is not a pickle.
  std::string h = R"({"__metadata__":{"k":"v"}})";
  h.append(128 - h.size(), ' ');
  EXPECT_EQ(parse_error(with_length(h)), "");
}

TEST(Safetensors, f16_and_bf16_convert_on_load) {
  // F16 bit patterns written by hand: 1.0, -2.5, 65504 (max), 2^-24 (smallest subnormal), -0.
  const uint16_t halves[5] = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x8000};
  std::string data(reinterpret_cast<const char*>(halves), 10);
  const std::string bytes = with_length(R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]}})", data);
  const auto dir = sk::testing::fresh_test_dir("sk_test_safetensors_f16");
  const std::string path = (dir / "h.safetensors").string();
  std::ofstream(path, std::ios::binary) << bytes;
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const std::vector<double> want = {1.0, -2.5, 65504.0, std::ldexp(1.0, -24), -0.0};
  EXPECT_EQ(f.tensor_as("h", DType::F32).to_vector(), want);
  EXPECT_EQ(f.tensor_as("h", DType::F64).to_vector(), want);
  Tensor dst = Tensor::zeros({5}, DType::F32);
  EXPECT_NE(error_of([&] { f.read_into("h", dst); }).find("dtype F16, expected F32"), std::string::npos);
  f.read_into("h", dst, /*convert=*/true);
  EXPECT_EQ(dst.to_vector(), want);
  EXPECT_TRUE(std::signbit(dst.to_vector()[4]));
  // BF16 stored -> F32 exactly.
  Rng rng(3);
  Tensor b = Tensor::randn({4, 3}, rng, DType::BF16);
  io::write_safetensors(path, {{"b", b}});
  io::SafetensorsFile g = io::SafetensorsFile::open(path);
  EXPECT_EQ(g.tensor_as("b", DType::F32).to_vector(), b.to_vector());
  std::filesystem::remove_all(dir);
}
