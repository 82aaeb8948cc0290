// ConfigSchema (schema.h).
#include "config/schema.h"

#include <sstream>

#include "util/check.h"

namespace sk::config {

namespace {
std::string fmt_range(double lo, double hi) {
  std::ostringstream os;
  os << "[" << lo << ", " << hi << "]";
  return os.str();
}
std::string fmt_int_range(int64_t lo, int64_t hi) { return "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]"; }
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}
}  // namespace

void ConfigSchema::add_int(const std::string& path, int64_t* field, int64_t min, int64_t max, const std::string& doc) {
  fields_[path] = {"int",
                   [=](const nlohmann::json& v, const std::string& where) {
                     SK_CHECK(v.is_number_integer() || (v.is_number_float() && v.get<double>() == double(int64_t(v.get<double>()))),
                              where, ": '", path, "' must be an integer, got ", v.dump());
                     const int64_t x = v.is_number_integer() ? v.get<int64_t>() : int64_t(v.get<double>());
                     SK_CHECK(x >= min && x <= max, where, ": '", path, "' = ", x, " is out of range ",
                              fmt_int_range(min, max));
                     *field = x;
                   },
                   [=] { return nlohmann::json(*field); }, fmt_int_range(min, max), doc};
}

void ConfigSchema::add_float(const std::string& path, double* field, double min, double max, const std::string& doc) {
  fields_[path] = {"float",
                   [=](const nlohmann::json& v, const std::string& where) {
                     SK_CHECK(v.is_number(), where, ": '", path, "' must be a number, got ", v.dump());
                     const double x = v.get<double>();
                     SK_CHECK(x >= min && x <= max, where, ": '", path, "' = ", x, " is out of range ",
                              fmt_range(min, max));
                     *field = x;
                   },
                   [=] { return nlohmann::json(*field); }, fmt_range(min, max), doc};
}

void ConfigSchema::add_bool(const std::string& path, bool* field, const std::string& doc) {
  fields_[path] = {"bool",
                   [=](const nlohmann::json& v, const std::string& where) {
                     SK_CHECK(v.is_boolean(), where, ": '", path, "' must be true or false, got ", v.dump());
                     *field = v.get<bool>();
                   },
                   [=] { return nlohmann::json(*field); }, "true | false", doc};
}

void ConfigSchema::add_string(const std::string& path, std::string* field, const std::string& doc) {
  fields_[path] = {"string",
                   [=](const nlohmann::json& v, const std::string& where) {
                     SK_CHECK(v.is_string(), where, ": '", path, "' must be a string, got ", v.dump());
                     *field = v.get<std::string>();
                   },
                   [=] { return nlohmann::json(*field); }, "", doc};
}

void ConfigSchema::add_choice(const std::string& path, std::string* field, const std::vector<std::string>& allowed,
                              const std::string& doc) {
  fields_[path] = {"choice",
                   [=](const nlohmann::json& v, const std::string& where) {
                     SK_CHECK(v.is_string(), where, ": '", path, "' must be one of ", join(allowed), ", got ", v.dump());
                     const std::string s = v.get<std::string>();
                     bool ok = false;
                     for (const auto& a : allowed) ok = ok || a == s;
                     SK_CHECK(ok, where, ": '", path, "' = \"", s, "\" is not one of: ", join(allowed));
                     *field = s;
                   },
                   [=] { return nlohmann::json(*field); }, join(allowed), doc};
}

void ConfigSchema::set_value(const std::string& path, const nlohmann::json& v, const std::string& where) {
  auto it = fields_.find(path);
  if (it == fields_.end()) {
    // Name the section's keys, or the sections, so a typo is easy to fix.
    const std::string section = path.substr(0, path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
    std::vector<std::string> near;
    for (const auto& [p, f] : fields_)
      if (!section.empty() && p.rfind(section, 0) == 0) near.push_back(p);
    if (near.empty())
      for (const auto& [p, f] : fields_) {
        const std::string top = p.substr(0, p.find('.'));
        if (near.empty() || near.back() != top) near.push_back(top);
      }
    SK_FAIL(where, ": unknown key '", path, "'; allowed here: ", join(near));
  }
  it->second.set(v, where);
}

void ConfigSchema::apply_json(const nlohmann::json& j, const std::string& source) {
  SK_CHECK(j.is_object(), source, ": a config must be a JSON object, got ", j.type_name());
  std::function<void(const nlohmann::json&, const std::string&)> walk = [&](const nlohmann::json& obj,
                                                                           const std::string& prefix) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (it->is_object() && !fields_.count(path)) walk(*it, path);
      else set_value(path, *it, source);
    }
  };
  walk(j, "");
}

void ConfigSchema::apply_override(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  SK_CHECK(eq != std::string::npos && eq > 0, "--set ", assignment, ": expected key.path=value");
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json v = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) v = text;  // a bare word is a string
  set_value(path, v, "--set " + assignment);
}

nlohmann::json ConfigSchema::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [path, f] : fields_) {
    nlohmann::json* node = &j;
    size_t start = 0, dot;
    while ((dot = path.find('.', start)) != std::string::npos) {
      node = &(*node)[path.substr(start, dot - start)];
      start = dot + 1;
    }
    (*node)[path.substr(start)] = f.get();
  }
  return j;
}

std::string ConfigSchema::describe() const {
  std::ostringstream os;
  for (const auto& [path, f] : fields_)
    os << path << "  (" << f.type << (f.constraint.empty() ? "" : ": " + f.constraint) << ")  " << f.doc << "\n";
  return os.str();
}

}  // namespace sk::config
