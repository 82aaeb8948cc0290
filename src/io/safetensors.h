// Safetensors files (the Hugging Face format): writer and memory-mapped, validating reader.
//
// Layout: 8 bytes little-endian u64 N, then N bytes of JSON header, then the data section.
// The header maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
// (byte offsets into the data section) and may hold "__metadata__": a string -> string map.
// Checks on read, as the reference reader (safetensors, Rust) makes them: the file holds the 8
// length bytes; N <= 100,000,000; the header is UTF-8 and starts with '{'; it parses as that
// structure (known dtype names, shapes and offsets of non-negative integers, metadata values
// strings); sorted by begin offset the tensors tile the data section exactly (the first begins
// at 0, each begins where the previous ends, end >= begin: no holes, no overlaps); each byte
// range equals elements x dtype size (no overflow); the data section ends at the end of the
// file. Every error names the file (and the tensor, where there is one).
//
// The writer pads the header with spaces to a multiple of 8 bytes and orders tensors by element
// size (largest first, then as given), so every tensor's data is aligned to its element size.
// Dtypes as sk::Tensor: F32, BF16, F64, I32, I64, U16; F16 is converted on load (tensor_as,
// read_into with convert). Other known dtypes (U8, F8_*, ...) pass validation and are readable as
// raw bytes (raw()). A file that is not safetensors but a zip (torch.save), a pickle (legacy
// pytorch_model.bin) or a git-LFS pointer is rejected saying so and how to convert or fetch it.
// Tests: tests/io/test_safetensors.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"
#include "util/file_io.h"

namespace sk::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StringMap = std::map<std::string, std::string>;

inline constexpr uint64_t kSafetensorsMaxHeader = 100000000;

// "F32" <-> DType; safetensors_dtype() throws for a DType with no safetensors name.
std::string safetensors_dtype(DType t);
std::optional<DType> dtype_from_safetensors(const std::string& name);  // nullopt: not a sk dtype
// Bits per element of a known safetensors dtype name (F4: 4, BF16: 16, ...); nullopt if unknown.
std::optional<int> safetensors_dtype_bits(const std::string& name);

// Writes `tensors` (any device; copied to the CPU, contiguous) and `metadata` to `path`.
// sync: fsync the file before returning (the caller renames/fsyncs directories as needed).
// Names must be unique and not "__metadata__". The file is written in place (not atomically).
void write_safetensors(const std::string& path, const NamedTensors& tensors, const StringMap& metadata = {},
                       bool sync = false);
// The bytes of such a file (tests, small payloads).
std::string safetensors_bytes(const NamedTensors& tensors, const StringMap& metadata = {});

struct TensorEntry {
  std::string name;
  std::string dtype;  // safetensors name, e.g. "BF16"
  Shape shape;
  size_t begin = 0, end = 0;  // byte offsets into the data section
};

// Validates a whole file image (header and layout; see above). `name` is used in errors.
// Returns the entries sorted by begin offset, the metadata and the data section's start.
struct SafetensorsLayout {
  std::vector<TensorEntry> entries;
  StringMap metadata;
  size_t data_start = 0;  // 8 + N
};
SafetensorsLayout parse_safetensors(const uint8_t* data, size_t size, const std::string& name);

class SafetensorsFile {
 public:
  // Maps and validates the file; throws sk::Error naming the path and the problem.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const StringMap& metadata() const { return layout_.metadata; }
  const std::vector<TensorEntry>& entries() const { return layout_.entries; }  // by offset
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;  // throws naming the file and tensor
  std::pair<const uint8_t*, size_t> raw(const std::string& name) const;
  // A fresh CPU tensor with the stored dtype and shape.
  Tensor tensor(const std::string& name) const;
  // A fresh CPU tensor converted to floating dtype `want` from a stored F64, F32, F16 or BF16.
  Tensor tensor_as(const std::string& name, DType want) const;
  // Copies tensor `name` into `dst` (any device): the stored shape must equal dst's and the
  // stored dtype must be `dst`'s dtype unless convert is true (then any floating -> floating,
  // F16 included).
  void read_into(const std::string& name, Tensor& dst, bool convert = false) const;

 private:
  util::MappedFile file_;
  SafetensorsLayout layout_;
  std::map<std::string, size_t> index_;  // name -> position in entries
};

}  // namespace sk::io
