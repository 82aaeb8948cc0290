// Tokenizer: byte-level BPE (GPT-2 / GPT-NeoX style), encode and decode.
//
// Loads either OpenAI's GPT-2 files (encoder.json + vocab.bpe) or a Hugging Face tokenizer.json
// (model.type "BPE", merges as "a b" strings or [a, b] pairs, added/special tokens, the NFC
// normalizer GPT-NeoX uses). Pre-tokenisation reproduces the GPT-2 pattern exactly:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with Unicode letter/number/whitespace classes from utf8proc. Special tokens such as
// <|endoftext|> are recognised in the text only when encode() is asked to.
// Token ids are uint32. Parity with Hugging Face `tokenizers`: tests/data/test_tokenizer_parity.cpp.
// Implementation: tokenizer.cpp (added tokens, pipeline), pretokenize.h (GPT-2 split, NFC),
// bpe_model.h (merges), bpe_files.h (file formats). Rules in docs/data/tokenizer.md.
// Thread safety: a loaded Tokenizer is immutable; encode/decode may run concurrently.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sk::data {

class Tokenizer {
 public:
  // From a directory holding encoder.json and vocab.bpe (OpenAI GPT-2 format). Throws sk::Error
  // naming the file and what is wrong.
  static Tokenizer load_gpt2_files(const std::string& dir);
  // From a Hugging Face tokenizer.json file.
  static Tokenizer load_hf_json(const std::string& path);
  // Either: a directory with tokenizer.json is read as Hugging Face, one with encoder.json +
  // vocab.bpe as GPT-2; a path to a .json file as Hugging Face.
  static Tokenizer load(const std::string& path);
  // The same from file contents already in memory (e.g. a tokenizer stored in a checkpoint);
  // `name` is used in error messages and by name().
  static Tokenizer from_gpt2_texts(std::string_view encoder_json, std::string_view vocab_bpe, const std::string& name);
  static Tokenizer from_hf_json_text(std::string_view json_text, const std::string& name);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // allow_special: recognise the special tokens (e.g. "<|endoftext|>") in the text; without it
  // they are encoded as ordinary text. Added tokens that are NOT special (tokenizer.json entries
  // with "special": false, e.g. GPT-NeoX's runs of spaces) are always recognised, as Hugging Face
  // `tokenizers` does.
  std::vector<uint32_t> encode(std::string_view text, bool allow_special = false) const;
  // Same, appending to out (no reallocation when out has capacity); returns the count appended.
  size_t encode_into(std::string_view text, std::vector<uint32_t>& out, bool allow_special = false) const;
  // Decodes to bytes (may be invalid UTF-8 if the ids split a character; then it is raw bytes).
  std::string decode(const std::vector<uint32_t>& ids) const;
  // The bytes of one token (throws sk::Error for an id that is not in the vocabulary).
  std::string_view token_bytes(uint32_t id) const;
  // The text as encode() sees it: NFC when the tokenizer.json asks for it (applied between the
  // added tokens matched in the raw text, as Hugging Face does), else unchanged; an added token
  // with lstrip/rstrip takes the whitespace it strips. decode(encode(x, a)) == normalize(x, a)
  // for every byte string x; for GPT-2 files (no normalizer, no stripping) that is x itself.
  std::string normalize(std::string_view text, bool allow_special = false) const;

  size_t vocab_size() const;  // largest id + 1, added tokens included
  uint32_t eot_id() const;    // the end-of-text token ("<|endoftext|>"); throws if absent
  std::string hash() const;   // stable hex digest of vocabulary + merges + added tokens
  std::string name() const;   // e.g. "gpt2 (encoder.json + vocab.bpe)" or the json path
  std::optional<uint32_t> token_id(std::string_view token) const;  // special/added tokens by text

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Single-thread encode throughput on text, in MB/s (1e6 bytes per second): the best of repeated
// encode() calls over at least ~1 s (at least 3 calls). For `sparsek bench tokenizer`.
double bench_tokenizer_mbps(const Tokenizer& tok, const std::string& text, bool allow_special = false);

}  // namespace sk::data
