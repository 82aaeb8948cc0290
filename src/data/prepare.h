// `sparsek prepare`: text files, directories and JSONL dumps -> token shards + a manifest.
//
//   inputs (in command-line order; directories walked recursively, files sorted by path, kept
//   when a --glob matches the file name or the path relative to the directory, symbolic links
//   inside directories skipped (duplicates); JSONL when the name ends in .jsonl/.ndjson or
//   --format jsonl: one document per non-blank line, its `text` field)
//     -> documents (a text file is one document; empty ones are skipped)
//     -> split by document: exactly round(val_fraction * n) documents (at least 1 when n >= 2 and
//        val_fraction > 0; at most n - 1) chosen by a seeded shuffle of the document numbers
//     -> encode on `threads` threads: [eot] + tokenizer.encode(text) per document (llm.c style)
//     -> written in input order (identical output for any thread count) into shards of
//        shard_tokens tokens: DIR/NAME_val_000000.bin ..., DIR/NAME_train_000000.bin ...
//        (documents run on across shard boundaries; only the last shard of a split is shorter)
//     -> DIR/NAME_manifest.json (sources, per-split counts, shards with sha256, tokenizer name and
//        hash, split seed and fraction, command line, sparsek commit).
// Shards are written into DIR/.NAME.partial-PID and moved into DIR only when the whole run
// succeeded (a failed run leaves an earlier run's shards and manifest untouched); shards left in
// DIR by an earlier run under the same NAME and not part of this run are then removed. Errors (missing/empty input, unwritable DIR, bad JSONL line as FILE:LINE) throw
// sk::Error with one line. Tests: tests/data/test_prepare.cpp.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sk::data {

class Tokenizer;

struct PrepareConfig {
  std::string tokenizer;             // path for Tokenizer::load (recorded in the manifest)
  std::string out_dir;
  std::string name;                  // [A-Za-z0-9._-]+
  std::vector<std::string> inputs;   // files and directories
  std::vector<std::string> globs;    // include patterns for files inside directories; none = all
  std::string format = "auto";       // auto | text | jsonl
  std::string jsonl_field = "text";
  int threads = 0;                   // encoder threads; 0 = hardware concurrency
  double val_fraction = 0.005;
  uint64_t seed = 1337;              // split seed
  int64_t shard_tokens = 100'000'000;
  bool progress = true;              // progress on stderr
  std::string command_line;          // recorded in the manifest
  nlohmann::json sparsek_build = nlohmann::json::object();  // {"commit": ...}, recorded as is
};

struct PrepareResult {
  nlohmann::ordered_json manifest;  // as written to manifest_path
  std::string manifest_path;
};

// Loads config.tokenizer and runs.
PrepareResult prepare(const PrepareConfig& config);
// With an already loaded tokenizer (config.tokenizer is then only recorded).
PrepareResult prepare(const PrepareConfig& config, const Tokenizer& tokenizer);

// The split: flags (1 = validation) for documents 0..n-1, as described above.
std::vector<char> choose_val_documents(int64_t n, double val_fraction, uint64_t seed);

}  // namespace sk::data
