// SafetensorsSet (safetensors_index.h): one file or the shards of an index.
#include "io/safetensors_index.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/check.h"
#include "util/file_io.h"

namespace sk::io {

namespace fs = std::filesystem;

SafetensorsSet SafetensorsSet::open(const std::string& path) {
  SafetensorsSet s;
  s.source_ = path;
  std::error_code ec;
  fs::path p(path), index;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json", ec)) {
      index = p / "model.safetensors.index.json";
    } else if (fs::exists(p / "model.safetensors", ec)) {
      p = p / "model.safetensors";
    } else {
      const bool bin = fs::exists(p / "pytorch_model.bin", ec) || fs::exists(p / "pytorch_model.bin.index.json", ec);
      SK_FAIL("model directory ", path, " has no model.safetensors or model.safetensors.index.json",
              bin ? " (it has pytorch_model.bin, PyTorch's pickle format, which sparsek does not read: convert it "
                    "with transformers: AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, "
                    "safe_serialization=True))"
                  : "");
    }
  } else if (p.filename().string().size() > 11 && p.extension() == ".json") {
    index = p;
  }
  if (index.empty()) {
    s.files_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(p.string())));
    for (const auto& e : s.files_[0]->entries()) s.where_[e.name] = 0;
    return s;
  }
  const std::string where = index.string();
  const nlohmann::json j = nlohmann::json::parse(util::read_file(where), nullptr, /*allow_exceptions=*/false);
  SK_CHECK(!j.is_discarded() && j.is_object(), "safetensors index ", where, " is not a JSON object");
  SK_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), "safetensors index ", where,
           " has no \"weight_map\" object");
  std::map<std::string, size_t> shard_pos;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    SK_CHECK(shard.is_string(), "safetensors index ", where, ": the shard of '", tensor, "' is not a string");
    const std::string name = shard.get<std::string>();
    SK_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "..", "safetensors index ", where,
             ": shard name '", name, "' of tensor '", tensor, "' is not a file name in the directory");
    auto it = shard_pos.find(name);
    if (it == shard_pos.end()) {
      const fs::path sp = index.parent_path() / name;
      SK_CHECK(fs::exists(sp, ec), "safetensors index ", where, ": shard ", sp.string(), " (holding '", tensor,
               "') is missing");
      s.files_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(sp.string())));
      it = shard_pos.emplace(name, s.files_.size() - 1).first;
    }
    SK_CHECK(s.files_[it->second]->contains(tensor), "safetensors index ", where, ": tensor '", tensor,
             "' is mapped to shard ", name, ", which does not hold it");
    s.where_[tensor] = it->second;
  }
  for (const auto& [name, pos] : shard_pos)
    for (const auto& e : s.files_[pos]->entries())
      SK_CHECK(s.where_.count(e.name) && s.where_[e.name] == pos, "safetensors index ", where, ": shard ", name,
               " holds tensor '", e.name, "', which the weight_map does not map to it");
  return s;
}

const SafetensorsFile& SafetensorsSet::file_of(const std::string& name) const {
  auto it = where_.find(name);
  SK_CHECK(it != where_.end(), "safetensors ", source_, ": no tensor named '", name, "'");
  return *files_[it->second];
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  for (const auto& [n, pos] : where_) out.push_back(n);
  return out;
}

}  // namespace sk::io
