// GPT-2 pre-tokenizer (hand-written scanner), UTF-8 decoding with invalid bytes, character
// classes from utf8proc, NFC. The rules are in pretokenize.h and docs/data/tokenizer.md.
// Tests: tests/data/test_tokenizer_pretokenize.cpp.
#include "data/pretokenize.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <cstring>

#include "util/check.h"

namespace sk::data {

namespace {

CharClass class_from_utf8proc(uint32_t cp) {
  if (cp == kInvalidUtf8 || cp > 0x10FFFF) return CharClass::Other;
  // White_Space = U+0009..U+000D, U+0085 and Zs/Zl/Zp (see the header).
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return CharClass::Space;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return CharClass::Space;
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::Letter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::Number;
    default:
      return CharClass::Other;
  }
}

// Classes of the 128 ASCII code points, filled from utf8proc once (not a hand-made table).
struct AsciiClasses {
  std::array<CharClass, 128> c{};
  AsciiClasses() {
    for (uint32_t i = 0; i < 128; ++i) c[i] = class_from_utf8proc(i);
  }
};
const AsciiClasses& ascii_classes() {
  static const AsciiClasses table;
  return table;
}

inline bool is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

// One character: its class and byte length. ASCII inline, the rest through decode_utf8.
struct Char {
  CharClass cls;
  int len;
};

inline Char next_char(const unsigned char* p, const unsigned char* end, const CharClass* ascii) {
  if (*p < 0x80) return {ascii[*p], 1};
  int len = 1;
  uint32_t cp = decode_utf8(p, end, &len);
  return {class_from_utf8proc(cp), len};
}

}  // namespace

uint32_t decode_utf8(const unsigned char* p, const unsigned char* end, int* len) {
  const unsigned char b0 = p[0];
  const ptrdiff_t avail = end - p;
  *len = 1;
  if (b0 < 0x80) return b0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (avail >= 2 && is_cont(p[1])) {
      *len = 2;
      return (uint32_t(b0 & 0x1F) << 6) | (p[1] & 0x3F);
    }
    return kInvalidUtf8;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (avail < 3) return kInvalidUtf8;
    const unsigned char b1 = p[1];
    // E0: A0..BF (no overlongs); ED: 80..9F (no surrogates); others 80..BF.
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    if (b1 < lo || b1 > hi || !is_cont(p[2])) return kInvalidUtf8;
    *len = 3;
    return (uint32_t(b0 & 0x0F) << 12) | (uint32_t(b1 & 0x3F) << 6) | (p[2] & 0x3F);
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (avail < 4) return kInvalidUtf8;
    const unsigned char b1 = p[1];
    // F0: 90..BF (no overlongs); F4: 80..8F (nothing past U+10FFFF); others 80..BF.
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (b1 < lo || b1 > hi || !is_cont(p[2]) || !is_cont(p[3])) return kInvalidUtf8;
    *len = 4;
    return (uint32_t(b0 & 0x07) << 18) | (uint32_t(b1 & 0x3F) << 12) | (uint32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
  return kInvalidUtf8;  // 80..C1 (continuation or overlong lead), F5..FF
}

CharClass char_class(uint32_t cp) {
  if (cp < 128) return ascii_classes().c[cp];
  return class_from_utf8proc(cp);
}

// The scanner. At each position the alternatives of the pattern are tried in order, as a
// backtracking regex engine does (leftmost alternative that matches wins):
//   1. 's 't 're 've 'm 'll 'd            ASCII apostrophe, lowercase ASCII letters only
//   2-4. ' '? then a maximal run of Letter / Number / Other (the class of the character after
//        the optional space decides which alternative matches)
//   5. \s+(?!\S): a whitespace run; if a non-space follows it, the run minus its last character
//      (that one is left to prefix the next piece: ' ' joins it via 2-4, any other whitespace
//      becomes a piece of its own via 6); if the run reaches the end of the text, all of it
//   6. \s+ : a single whitespace character followed by a non-space.
void gpt2_split(std::string_view text, std::vector<uint32_t>& ends) {
  SK_CHECK(text.size() < 0xFFFFFFFFull, "gpt2_split: text of ", text.size(), " bytes is too long (offsets are uint32)");
  const CharClass* ascii = ascii_classes().c.data();
  const auto* base = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = base + text.size();
  const unsigned char* p = base;
  while (p < end) {
    const unsigned char b = *p;
    // 1. Contractions.
    if (b == '\'' && end - p >= 2) {
      const unsigned char c1 = p[1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        p += 2;
        ends.push_back(uint32_t(p - base));
        continue;
      }
      if (end - p >= 3) {
        const unsigned char c2 = p[2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          p += 3;
          ends.push_back(uint32_t(p - base));
          continue;
        }
      }
    }
    Char c = next_char(p, end, ascii);
    const unsigned char* run = p;  // where the class run starts
    if (b == ' ' && end - p >= 2) {
      Char c1 = next_char(p + 1, end, ascii);
      if (c1.cls != CharClass::Space) {  // 2-4 with the optional space
        run = p + 1;
        c = c1;
      }
    }
    if (c.cls != CharClass::Space) {
      // 2-4: maximal run of one class.
      const CharClass cls = c.cls;
      const unsigned char* q = run + c.len;
      while (q < end && *q < 0x80 && ascii[*q] == cls) ++q;  // ASCII fast loop
      while (q < end) {
        Char n = next_char(q, end, ascii);
        if (n.cls != cls) break;
        q += n.len;
      }
      p = q;
      ends.push_back(uint32_t(p - base));
      continue;
    }
    // 5/6: whitespace run [p, q); last = start of its last character.
    const unsigned char* q = p + c.len;
    const unsigned char* last = p;
    while (q < end) {
      Char n = next_char(q, end, ascii);
      if (n.cls != CharClass::Space) break;
      last = q;
      q += n.len;
    }
    if (q == end || last == p) {
      p = q;  // 5 (run reaches the end) or 6 (a single character before a non-space)
    } else {
      p = last;  // 5: leave the last whitespace character for the next piece
    }
    ends.push_back(uint32_t(p - base));
  }
}

std::vector<std::string> gpt2_split_strings(std::string_view text) {
  std::vector<uint32_t> ends;
  gpt2_split(text, ends);
  std::vector<std::string> out;
  uint32_t start = 0;
  for (uint32_t e : ends) {
    out.emplace_back(text.substr(start, e - start));
    start = e;
  }
  return out;
}

bool nfc_trivially_stable(std::string_view text) {
  // Every byte below 0xCC: ASCII, continuation bytes and lead bytes of U+0080..U+02FF (and some
  // invalid bytes, which NFC leaves alone anyway).
  for (unsigned char b : text)
    if (b >= 0xCC) return false;
  return true;
}

std::string nfc_normalize(std::string_view text) {
  if (nfc_trivially_stable(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 16);
  const auto* base = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = base + text.size();
  const unsigned char* p = base;
  auto flush = [&](const unsigned char* s, const unsigned char* e) {
    if (s == e) return;
    std::string_view run(reinterpret_cast<const char*>(s), size_t(e - s));
    if (nfc_trivially_stable(run)) {
      out.append(run);
      return;
    }
    utf8proc_uint8_t* dst = nullptr;
    utf8proc_ssize_t n =
        utf8proc_map(s, utf8proc_ssize_t(e - s), &dst, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    SK_CHECK(n >= 0, "nfc_normalize: utf8proc_map failed: ", utf8proc_errmsg(n));
    out.append(reinterpret_cast<const char*>(dst), size_t(n));
    std::free(dst);
  };
  const unsigned char* run = p;
  while (p < end) {
    int len = 1;
    if (*p < 0x80) {
      ++p;
      continue;
    }
    if (decode_utf8(p, end, &len) == kInvalidUtf8) {
      flush(run, p);
      out.push_back(char(*p));
      ++p;
      run = p;
      continue;
    }
    p += len;
  }
  flush(run, end);
  return out;
}

}  // namespace sk::data
