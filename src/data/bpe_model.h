// Byte-level BPE model: GPT-2's bytes_to_unicode mapping, the vocabulary (id -> bytes), the
// merge table keyed by pairs of ids, and the merge loop for one pre-token.
//
// Merging follows Hugging Face `tokenizers` (models/bpe/word.rs): the word starts as one symbol
// per byte (the id of that byte's token); repeatedly the adjacent pair with the lowest merge rank
// (line number in the merges list) is merged, the leftmost such pair on ties; it stops when no
// adjacent pair has a merge. For merges lists where a pair's parts are made by earlier merges
// (all trained ones), this equals OpenAI's encoder.py and tiktoken.
// Words up to kHeapThreshold symbols use arrays and a linear scan for the minimum (fast for
// typical words); longer ones a binary heap over a linked list (no quadratic time on long runs).
// Both give the same result (tests force each path).
// Pre-tokens that are a whole vocabulary token which BPE maps to itself are looked up in a
// read-only hash table built at load time (the "cache": thread-safe, no locks); only the others
// run the merge loop.
// Tests: tests/data/test_tokenizer.cpp (BpeModel.*).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sk::data {

// GPT-2's bytes_to_unicode(): bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to the code point of the
// same value; the other 68 bytes, in increasing order, to U+0100, U+0101, ... Returned as UTF-8.
const std::array<std::string, 256>& byte_to_unicode();
// Inverse: the bytes of a token string written in that alphabet; nullopt if a character is
// outside it (or the string is not valid UTF-8).
std::optional<std::string> unicode_to_bytes(std::string_view token);

class BpeModel {
 public:
  static constexpr size_t kHeapThreshold = 96;

  // vocab: token string (byte-level alphabet) -> id; merges: pairs of token strings in rank
  // order (a later duplicate pair replaces the earlier one, as in `tokenizers`). Throws sk::Error
  // prefixed with `source` on: an id used twice, ids >= 2^31, a missing single-byte token, a
  // merge naming a token (or producing a string) that is not in the vocabulary.
  static BpeModel build(const std::vector<std::pair<std::string, uint32_t>>& vocab,
                        const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
                        const std::string& source);

  // Appends the ids of one pre-token (raw bytes, non-empty).
  void encode_piece(std::string_view piece, std::vector<uint32_t>& out) const {
    if (piece.size() == 1) {
      out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
      return;
    }
    uint32_t id;
    if (lookup_whole(piece, &id)) {
      out.push_back(id);
      return;
    }
    merge_bytes(piece, out);
  }
  // The merge loop alone (no whole-token lookup). heap_threshold: words longer than this use the
  // heap path (tests pass 0 or SIZE_MAX to force one path).
  void merge_bytes(std::string_view piece, std::vector<uint32_t>& out, size_t heap_threshold = kHeapThreshold) const;

  bool has_id(uint32_t id) const { return id < present_.size() && present_[id]; }
  // Largest vocabulary id + 1.
  size_t id_limit() const { return present_.size(); }
  // Bytes of a vocabulary token: the byte-level decoding of its string, or the string's own UTF-8
  // bytes when a character is outside the byte alphabet (as the ByteLevel decoder does).
  std::string_view token_bytes(uint32_t id) const {
    return std::string_view(arena_).substr(tok_off_[id], tok_off_[id + 1] - tok_off_[id]);
  }
  std::optional<uint32_t> id_of_string(std::string_view token_string) const;
  uint32_t byte_id(unsigned char b) const { return byte_id_[b]; }
  size_t num_merges() const { return merge_list_.size(); }
  // (left id, right id) of each merge in rank order (for the tokenizer hash).
  const std::vector<std::pair<uint32_t, uint32_t>>& merge_list() const { return merge_list_; }
  // Token strings as written in the file (for the hash and lookups by string).
  const std::vector<std::string>& token_strings() const { return strings_; }
  bool ignore_merges() const { return ignore_merges_; }
  size_t whole_table_size() const { return whole_count_; }

 private:
  static constexpr uint64_t kEmptyKey = ~0ull;
  static constexpr uint64_t kNoMerge = ~0ull;

  // Packed (rank << 32 | new id) of the merge of (a, b), or kNoMerge.
  uint64_t pair_merge(uint32_t a, uint32_t b) const {
    const uint64_t key = (uint64_t(a) << 32) | b;
    size_t i = size_t((key * 0x9E3779B97F4A7C15ull) >> pair_shift_);
    while (true) {
      const uint64_t k = pair_keys_[i];
      if (k == key) return pair_vals_[i];
      if (k == kEmptyKey) return kNoMerge;
      i = (i + 1) & pair_mask_;
    }
  }
  bool lookup_whole(std::string_view piece, uint32_t* id) const;
  void insert_whole(std::string_view bytes, uint32_t id);
  void merge_small(std::string_view piece, std::vector<uint32_t>& out) const;
  void merge_heap(std::string_view piece, std::vector<uint32_t>& out) const;

  std::array<uint32_t, 256> byte_id_{};
  std::vector<uint8_t> present_;
  std::vector<uint32_t> tok_off_;  // id -> offset into arena_ (size id_limit + 1)
  std::string arena_;
  std::vector<std::string> strings_;  // id -> token string ("" for holes)
  std::vector<std::pair<uint32_t, uint32_t>> merge_list_;
  // Merge table: open addressing, key (a << 32 | b).
  std::vector<uint64_t> pair_keys_, pair_vals_;
  size_t pair_mask_ = 0;
  int pair_shift_ = 64;
  // Whole-token table: slot = (hash high 32 bits << 32) | (id + 1); 0 = empty.
  std::vector<uint64_t> whole_;
  size_t whole_mask_ = 0;
  size_t whole_count_ = 0;
  bool ignore_merges_ = false;
};

// 64-bit hash of a short byte string (used by the whole-token table).
uint64_t hash_bytes(const void* data, size_t len);

}  // namespace sk::data
