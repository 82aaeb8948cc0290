// A Hugging Face model directory's weights as one set of named tensors: model.safetensors, or the
// shards listed by model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor ->
// shard file}}). Every shard is memory-mapped and validated (safetensors.h); the index must name
// every tensor of every shard it lists and each tensor in exactly the shard that holds it.
// Errors name the directory, the missing shard or tensor. A directory holding only
// pytorch_model.bin (zip or pickle) is refused with how to convert it.
// Tests: tests/io/test_safetensors_index.cpp.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace sk::io {

class SafetensorsSet {
 public:
  // `path`: a model directory, a .safetensors file or a model.safetensors.index.json.
  static SafetensorsSet open(const std::string& path);

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsFile& file_of(const std::string& name) const;  // throws naming the tensor
  std::vector<std::string> names() const;                          // sorted
  size_t num_shards() const { return files_.size(); }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor -> position in files_
};

}  // namespace sk::io
