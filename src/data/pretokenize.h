// Text side of the tokenizer, before BPE: UTF-8 decoding that tolerates invalid bytes, the
// character classes of the GPT-2 pattern, the GPT-2 pre-tokenizer itself, and NFC.
//
// The GPT-2 pattern (OpenAI's encoder.py, Hugging Face ByteLevel, tiktoken "gpt2")
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// is reproduced by a hand-written scanner over code points (gpt2_split), not a regex engine.
// Classes, from utf8proc (Unicode 15.0 in Debian 12's libutf8proc 2.8):
//   Space  = White_Space: U+0009..U+000D, U+0085 and the categories Zs, Zl, Zp (U+0020, U+00A0,
//            U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000): 25 code points,
//            the set \s has in Rust's regex/fancy-regex, Oniguruma and Python's `regex`.
//   Letter = categories Lu Ll Lt Lm Lo;  Number = Nd Nl No;  Other = everything else.
// Invalid UTF-8: a byte that does not start a well-formed sequence (Unicode Table 3-7: no
// overlongs, surrogates or code points past U+10FFFF, no truncated sequences) is one character
// of its own, of class Other. So every byte string splits, and decode(encode(x)) == x.
// See docs/data/tokenizer.md. Tests: tests/data/test_tokenizer_pretokenize.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sk::data {

enum class CharClass : uint8_t { Other = 0, Letter = 1, Number = 2, Space = 3 };

// Code point returned for a byte that does not start a well-formed UTF-8 sequence.
inline constexpr uint32_t kInvalidUtf8 = 0xFFFFFFFFu;

// Decodes the character at p (p < end): the code point and its byte length (1..4), or
// kInvalidUtf8 with length 1.
uint32_t decode_utf8(const unsigned char* p, const unsigned char* end, int* len);

// Class of a code point (kInvalidUtf8 -> Other).
CharClass char_class(uint32_t cp);

// Splits text into GPT-2 pre-tokens, appending the END byte offset of each piece to ends (the
// pieces cover text exactly: piece i is [ends[i-1], ends[i]), piece 0 starts at 0). Does not
// clear ends. Works on any bytes.
void gpt2_split(std::string_view text, std::vector<uint32_t>& ends);

// Convenience for tests: the pieces as strings.
std::vector<std::string> gpt2_split_strings(std::string_view text);

// Unicode NFC (utf8proc) of every maximal well-formed run; invalid bytes are copied unchanged.
// Runs made only of code points below U+0300 are returned as they are without calling utf8proc
// (NFC leaves them unchanged: checked for every such code point and pair of code points).
std::string nfc_normalize(std::string_view text);
// True when nfc_normalize(text) == text is known without normalizing (the fast path above).
bool nfc_trivially_stable(std::string_view text);

}  // namespace sk::data
