// Readers for the tokenizer file formats, into one neutral description (BpeSpec):
//   OpenAI GPT-2: encoder.json (token string -> id) + vocab.bpe ("#version: 0.2", then one
//     "a b" merge per line); "<|endoftext|>", when encoder.json has it, becomes a special token.
//   Hugging Face tokenizer.json: model.type "BPE" (vocab, merges as "a b" strings or [a, b]
//     pairs, ignore_merges), added_tokens, normalizer null / NFC / Sequence of NFC, pre_tokenizer
//     ByteLevel (add_prefix_space false) alone or after a Split with the GPT-2 pattern.
// Anything else (other model types, normalizers, pre-tokenizers, options that change encoding)
// is rejected with an sk::Error naming the file, the key and the value. The parse_* functions
// work on file contents (the fuzz targets in fuzz/ call them); `where` names the source in errors.
// Tests: tests/data/test_tokenizer_files.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sk::data {

struct AddedTokenSpec {
  uint32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = false;  // matched on the normalized text (after NFC) instead of the raw text
  bool lstrip = false;      // the match takes the whitespace on its left
  bool rstrip = false;      // ... and on its right
};

struct BpeSpec {
  std::string source;  // file name(s) for error messages
  std::string name;    // what Tokenizer::name() returns
  std::vector<std::pair<std::string, uint32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedTokenSpec> added;
  bool nfc = false;
  bool ignore_merges = false;
};

// Reads a whole file; throws sk::Error naming it when it cannot be opened or read.
std::string read_file_bytes(const std::string& path, const char* what);

BpeSpec parse_gpt2_files(std::string_view encoder_json, std::string_view vocab_bpe, const std::string& encoder_where,
                         const std::string& vocab_where);
BpeSpec parse_hf_tokenizer_json(std::string_view json, const std::string& where);

BpeSpec read_gpt2_files(const std::string& dir);
BpeSpec read_hf_tokenizer_json(const std::string& path);

// The GPT-2 pattern as it appears in tokenizer.json's Split pre-tokenizer.
extern const char* const kGpt2Pattern;

}  // namespace sk::data
