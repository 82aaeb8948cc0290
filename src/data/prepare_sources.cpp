// Inputs of `sparsek prepare` (prepare_sources.h): directory walks with globs, document counts,
// document reading (text files whole, JSONL records by field). Tests: tests/data/test_prepare.cpp.
#include "data/prepare_sources.h"

#include <fnmatch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/check.h"

namespace sk::data {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') return false;
  return true;
}

// Non-blank lines of a JSONL file.
int64_t count_jsonl_records(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SK_CHECK(f.good(), "prepare: cannot read ", path, ": ", std::strerror(errno));
  std::vector<char> buf(1 << 20);
  int64_t records = 0;
  bool line_has_text = false;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(f.gcount());
    for (size_t i = 0; i < n; ++i) {
      const char c = buf[i];
      if (c == '\n') {
        records += line_has_text;
        line_has_text = false;
      } else if (c != ' ' && c != '\t' && c != '\r') {
        line_has_text = true;
      }
    }
  }
  return records + line_has_text;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SK_CHECK(f.good(), "prepare: cannot read ", path, ": ", std::strerror(errno));
  std::string s;
  f.seekg(0, std::ios::end);
  s.resize(static_cast<size_t>(f.tellg()));
  f.seekg(0);
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  SK_CHECK(f.gcount() == static_cast<std::streamsize>(s.size()), "prepare: short read of ", path);
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "'" : ", '") + s + "'";
  return out;
}

}  // namespace

ScanResult scan_inputs(const std::vector<std::string>& inputs, const std::vector<std::string>& globs,
                       const std::string& format) {
  SK_CHECK(format == "auto" || format == "text" || format == "jsonl", "prepare: --format '", format,
           "' is not auto, text or jsonl");
  SK_CHECK(!inputs.empty(), "prepare: no inputs given (text files, directories or JSONL files)");
  auto is_jsonl = [&](const std::string& p) {
    return format == "jsonl" || (format == "auto" && (ends_with(p, ".jsonl") || ends_with(p, ".ndjson")));
  };
  ScanResult r;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    SK_CHECK(fs::exists(st), "prepare: input ", in, " does not exist");
    Source src;
    src.path = in;
    std::vector<std::string> paths;
    if (fs::is_directory(st)) {
      src.type = "directory";
      std::vector<std::pair<std::string, std::string>> found;  // (relative, full)
      try {
        for (const auto& e : fs::recursive_directory_iterator(in)) {
          if (e.is_symlink()) {  // duplicates (or escapes from) the tree: skipped
            r.symlinks_skipped += e.is_regular_file();
            continue;
          }
          if (!e.is_regular_file()) continue;
          const std::string rel = e.path().lexically_relative(in).generic_string();
          const std::string base = e.path().filename().string();
          bool keep = globs.empty();
          for (const auto& g : globs)
            keep = keep || fnmatch(g.c_str(), base.c_str(), 0) == 0 || fnmatch(g.c_str(), rel.c_str(), FNM_PATHNAME) == 0;
          if (keep) found.emplace_back(rel, e.path().string());
        }
      } catch (const fs::filesystem_error& e) {
        SK_FAIL("prepare: cannot list input ", in, ": ", e.what());
      }
      std::sort(found.begin(), found.end());
      for (auto& f : found) paths.push_back(std::move(f.second));
    } else if (fs::is_regular_file(st)) {
      src.type = is_jsonl(in) ? "jsonl" : "text";
      paths.push_back(in);
    } else {
      SK_FAIL("prepare: input ", in, " is neither a regular file nor a directory");
    }
    for (const auto& p : paths) {
      SourceFile f;
      f.path = p;
      f.jsonl = is_jsonl(p);
      f.bytes = static_cast<int64_t>(fs::file_size(p, ec));
      SK_CHECK(!ec, "prepare: cannot stat ", p, ": ", ec.message());
      f.documents = f.jsonl ? count_jsonl_records(p) : (f.bytes > 0 ? 1 : 0);
      f.source = r.sources.size();
      src.bytes += f.bytes;
      if (f.documents == 0) {
        r.empty_files += !f.jsonl;
        continue;
      }
      src.files += 1;
      src.documents += f.documents;
      r.files.push_back(std::move(f));
    }
    if (src.type == "directory")
      SK_CHECK(src.documents > 0, "prepare: empty input: directory ", in, " has no non-empty files",
               globs.empty() ? std::string() : " matching " + join(globs));
    else
      SK_CHECK(src.documents > 0, "prepare: empty input: ", in, src.type == "jsonl" ? " has no JSONL records" : " is empty");
    r.documents += src.documents;
    r.bytes += src.bytes;
    r.sources.push_back(std::move(src));
  }
  return r;
}

int64_t read_documents(const SourceFile& file, const std::string& jsonl_field,
                       const std::function<void(std::string&& text, int64_t src_bytes)>& on_doc) {
  if (!file.jsonl) {
    std::string text = read_file(file.path);
    const auto n = static_cast<int64_t>(text.size());
    on_doc(std::move(text), n);
    return 0;
  }
  std::ifstream f(file.path, std::ios::binary);
  SK_CHECK(f.good(), "prepare: cannot read ", file.path, ": ", std::strerror(errno));
  std::string line;
  int64_t line_no = 0, pending = 0;
  while (std::getline(f, line)) {
    ++line_no;
    pending += static_cast<int64_t>(line.size()) + (f.eof() ? 0 : 1);
    if (is_blank(line.data(), line.size())) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      SK_FAIL("prepare: ", file.path, ":", line_no, ": invalid JSON (", e.what(), ")");
    }
    SK_CHECK(j.is_object(), "prepare: ", file.path, ":", line_no, ": the record is not a JSON object");
    const auto it = j.find(jsonl_field);
    SK_CHECK(it != j.end(), "prepare: ", file.path, ":", line_no, ": no field '", jsonl_field,
             "' in the record (choose another with --jsonl-field)");
    SK_CHECK(it->is_string(), "prepare: ", file.path, ":", line_no, ": field '", jsonl_field, "' is ",
             it->type_name(), ", not a string");
    on_doc(it->get<std::string>(), pending);
    pending = 0;
  }
  SK_CHECK(!f.bad(), "prepare: read error in ", file.path);
  return pending;
}

}  // namespace sk::data
