// The input side of `sparsek prepare` (prepare.h): finding the files behind each input
// (recursive, sorted, glob-filtered, symbolic links inside directories not followed: they
// duplicate files or leave the tree; a symlink given as an input is read), counting documents, and reading the documents in order
// (whole text files; JSONL records' text field, errors reported as FILE:LINE).
// Tests: tests/data/test_prepare.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sk::data {

struct SourceFile {
  std::string path;
  bool jsonl = false;
  int64_t bytes = 0;
  int64_t documents = 0;  // text: 1 (0 if empty); JSONL: non-blank lines
  size_t source = 0;      // index into ScanResult::sources
};

// One command-line input.
struct Source {
  std::string path;   // as given
  std::string type;   // "directory", "text" or "jsonl"
  int64_t files = 0;
  int64_t bytes = 0;
  int64_t documents = 0;
};

struct ScanResult {
  std::vector<Source> sources;
  std::vector<SourceFile> files;  // in processing order
  int64_t documents = 0;
  int64_t bytes = 0;
  int64_t empty_files = 0;        // zero-byte text files inside directories (skipped)
  int64_t symlinks_skipped = 0;   // symbolic links to files inside directories (not followed)
};

// format: "auto" (JSONL when the name ends in .jsonl or .ndjson), "text" or "jsonl".
// Throws sk::Error on a missing input, an input without documents, an unknown format.
ScanResult scan_inputs(const std::vector<std::string>& inputs, const std::vector<std::string>& globs,
                       const std::string& format);

// Calls on_doc(text, src_bytes) for each document of `file` in order; src_bytes is the number of
// source bytes consumed since the previous call (blank lines included). Returns the bytes after
// the last document. JSONL errors: "FILE:LINE: ...".
int64_t read_documents(const SourceFile& file, const std::string& jsonl_field,
                       const std::function<void(std::string&& text, int64_t src_bytes)>& on_doc);

}  // namespace sk::data
