// ConfigSchema: the typed, validated binding between a JSON run config and C++ config structs.
//
// Each field is registered once with its dotted path ("model.n_layer"), a pointer to the struct
// member, a one-line doc and its constraints (range, or allowed strings). Loading walks the JSON:
// an unknown key, a wrong type or an out-of-range value throws sk::Error naming the full path and
// what is allowed; `--set a.b=value` overrides go through the same checks. to_json() writes the
// resolved config back (every field, defaults included), which `sparsek config show` prints.
// Tests: tests/config/test_config.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sk::config {

class ConfigSchema {
 public:
  void add_int(const std::string& path, int64_t* field, int64_t min, int64_t max, const std::string& doc);
  void add_float(const std::string& path, double* field, double min, double max, const std::string& doc);
  void add_bool(const std::string& path, bool* field, const std::string& doc);
  void add_string(const std::string& path, std::string* field, const std::string& doc);  // any string
  void add_choice(const std::string& path, std::string* field, const std::vector<std::string>& allowed,
                  const std::string& doc);

  // Applies a JSON object (nested sections); throws on unknown keys, types, ranges.
  void apply_json(const nlohmann::json& j, const std::string& source);
  // Applies "a.b=value" (value parsed as JSON when it parses, else taken as a string).
  void apply_override(const std::string& assignment);
  nlohmann::json to_json() const;
  // "path  type  [range]  doc" lines, for --help-config and docs.
  std::string describe() const;

 private:
  struct Field {
    std::string type;  // int, float, bool, string, choice
    std::function<void(const nlohmann::json&, const std::string& where)> set;
    std::function<nlohmann::json()> get;
    std::string constraint, doc;
  };
  void set_value(const std::string& path, const nlohmann::json& v, const std::string& where);
  std::map<std::string, Field> fields_;  // ordered by path
};

}  // namespace sk::config
