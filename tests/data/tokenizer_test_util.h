// Helpers shared by the tokenizer tests (tests/data/test_tokenizer*.cpp): where the repository,
// the fixtures and the GPT-2 files are, reading files, and a GPT-2 fixture loaded once.
//
// Repository root: the SPARSEK_SOURCE_DIR compile definition when the build sets it, else two
// folders up from this header's own path (__FILE__ is absolute in CMake builds), else ../.. of the
// working directory. GPT-2 files: $SPARSEK_GPT2_DIR, else <root>/data/tokenizers/gpt2
// (scripts/get_gpt2_tokenizer.sh puts them there); tests that need them GTEST_SKIP without them.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "data/tokenizer.h"

namespace sk::testing {

inline std::string repo_root() {
#ifdef SPARSEK_SOURCE_DIR
  return SPARSEK_SOURCE_DIR;
#else
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path here(__FILE__);
  if (here.is_absolute()) {
    fs::path root = here.parent_path().parent_path().parent_path();
    if (fs::exists(root / "src" / "data" / "tokenizer.h", ec)) return root.string();
  }
  return (fs::current_path(ec) / ".." / "..").lexically_normal().string();
#endif
}

inline std::string fixture_path(const std::string& name) { return repo_root() + "/tests/data/fixtures/" + name; }

inline std::string gpt2_dir() {
  if (const char* env = std::getenv("SPARSEK_GPT2_DIR"); env && *env) return env;
  return repo_root() + "/data/tokenizers/gpt2";
}

inline bool gpt2_present() {
  std::error_code ec;
  return std::filesystem::exists(gpt2_dir() + "/encoder.json", ec) &&
         std::filesystem::exists(gpt2_dir() + "/vocab.bpe", ec);
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

// The GPT-2 tokenizer, loaded once per test binary (nullptr when the files are absent).
inline const sk::data::Tokenizer* gpt2_tokenizer() {
  static std::unique_ptr<sk::data::Tokenizer> tok = [] {
    std::unique_ptr<sk::data::Tokenizer> t;
    if (gpt2_present()) t = std::make_unique<sk::data::Tokenizer>(sk::data::Tokenizer::load_gpt2_files(gpt2_dir()));
    return t;
  }();
  return tok.get();
}

inline const sk::data::Tokenizer& tiny_tokenizer() {
  static sk::data::Tokenizer tok = sk::data::Tokenizer::load_hf_json(fixture_path("tiny_tokenizer.json"));
  return tok;
}

// A fresh temporary directory per call (removed by the caller or left in /tmp).
inline std::string temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  static int counter = 0;
  fs::path p = fs::temp_directory_path() /
               ("sparsek-tok-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::create_directories(p);
  return p.string();
}

}  // namespace sk::testing

#define SK_REQUIRE_GPT2()                                                                \
  do {                                                                                   \
    if (::sk::testing::gpt2_tokenizer() == nullptr)                                      \
      GTEST_SKIP() << "GPT-2 tokenizer files not found in " << ::sk::testing::gpt2_dir() \
                   << " (run scripts/get_gpt2_tokenizer.sh, or set SPARSEK_GPT2_DIR)";   \
  } while (0)
