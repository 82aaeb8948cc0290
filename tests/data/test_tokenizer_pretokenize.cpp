// GPT-2 pre-tokenizer, UTF-8 decoding, character classes and NFC (src/data/pretokenize.cpp).
// Expected splits were checked against Python's `regex` module (the engine OpenAI's encoder.py
// uses) with the GPT-2 pattern; the scanner also matched it on 30,000 random strings during
// development (see docs/data/tokenizer.md).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "data/pretokenize.h"

using sk::data::CharClass;
using sk::data::gpt2_split_strings;
using V = std::vector<std::string>;

namespace {

void expect_split(const std::string& text, const V& want) {
  EXPECT_EQ(gpt2_split_strings(text), want) << "text: '" << text << "'";
}

}  // namespace

TEST(Pretokenize, contractions) {
  expect_split("I'll've", {"I", "'ll", "'ve"});
  expect_split("don't DON'T", {"don", "'t", " DON", "'", "T"});  // case-sensitive
  expect_split("'S", {"'", "S"});
  expect_split("''s", {"''", "s"});
  expect_split("'sa", {"'s", "a"});  // the contraction wins even inside a word
  expect_split(" 's", {" '", "s"});
  expect_split("they're we've I'm he'd", {"they", "'re", " we", "'ve", " I", "'m", " he", "'d"});
  // Only the ASCII apostrophe: U+2019 is punctuation.
  expect_split("it\u2019s", {"it", "\u2019", "s"});
}

TEST(Pretokenize, whitespace_runs) {
  expect_split("a   b", {"a", "  ", " b"});
  expect_split("\n\n", {"\n\n"});
  expect_split("a\n\nb", {"a", "\n", "\n", "b"});
  expect_split("hello   ", {"hello", "   "});
  expect_split("foo  bar\n", {"foo", " ", " bar", "\n"});
  expect_split("x  \ty", {"x", "  ", "\t", "y"});
  expect_split("x \t", {"x", " \t"});
  expect_split("a \n b", {"a", " \n", " b"});
  expect_split("a\r\nb", {"a", "\r", "\n", "b"});
  expect_split(" ", {" "});
  expect_split("  ", {"  "});
  expect_split("", {});
}

TEST(Pretokenize, unicode_whitespace) {
  expect_split("\u00a0x", {"\u00a0", "x"});
  expect_split(" \u00a0x", {" ", "\u00a0", "x"});
  expect_split("x\u3000\u3000y", {"x", "\u3000", "\u3000", "y"});
  expect_split("x\u0085y", {"x", "\u0085", "y"});
  expect_split("\u2028", {"\u2028"});
  // U+200B (zero width space) and U+FEFF are format characters, not White_Space.
  expect_split("a\u200bb", {"a", "\u200b", "b"});
  // U+001C..U+001F are not White_Space either (Python's str.isspace() says they are).
  expect_split("a\x1c b", {"a", "\x1c", " b"});
}

TEST(Pretokenize, numbers_letters_other) {
  expect_split("12345", {"12345"});
  expect_split("abc123 456", {"abc", "123", " 456"});
  expect_split("$5.00", {"$", "5", ".", "00"});
  expect_split("a!!b", {"a", "!!", "b"});
  expect_split(" !!", {" !!"});
  expect_split("\u0663\u0664 \u216b \u00bdx\u00b2", {"\u0663\u0664", " \u216b", " \u00bd", "x", "\u00b2"});
  expect_split("h\u00e9llo w\u00f6rld", {"h\u00e9llo", " w\u00f6rld"});
  expect_split("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u4e2d\u6587",
               {"\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u3002", "\u4e2d\u6587"});
  // Emoji (So), skin tone (Sk), ZWJ (Cf) are all "other": one run.
  expect_split("\U0001F44D\U0001F3FD ok \U0001F468\u200d\U0001F469\u200d\U0001F467!",
               {"\U0001F44D\U0001F3FD", " ok", " \U0001F468\u200d\U0001F469\u200d\U0001F467!"});
  // A combining mark (Mn) is not a letter: it breaks the letter run.
  expect_split("e\u0301t", {"e", "\u0301", "t"});
}

TEST(Pretokenize, invalid_utf8_bytes_are_other_characters) {
  expect_split(
      "a\xff"
      "b",
      {"a", "\xff", "b"});
  expect_split(" \xff\xfe!", {" \xff\xfe!"});
  expect_split("\xe2\x82", {"\xe2\x82"});              // truncated 3-byte sequence
  expect_split("x\xc0\xafy", {"x", "\xc0\xaf", "y"});  // overlong '/'
  expect_split(
      "\xed\xa0\x80"
      "a",
      {"\xed\xa0\x80", "a"});  // surrogate U+D800
  expect_split(" \x80", {" \x80"});
  expect_split("\xf4\x90\x80\x80", {"\xf4\x90\x80\x80"});  // past U+10FFFF
}

TEST(Pretokenize, pieces_cover_any_bytes) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = char(rng() % 4 == 0 ? (rng() % 256) : " \t\na'sZ9."[rng() % 10]);
    std::string joined;
    for (const auto& p : gpt2_split_strings(s)) {
      ASSERT_FALSE(p.empty());
      joined += p;
    }
    ASSERT_EQ(joined, s);
  }
}

TEST(Pretokenize, decode_utf8) {
  auto dec = [](const std::string& s, int* len) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    return sk::data::decode_utf8(p, p + s.size(), len);
  };
  int len = 0;
  EXPECT_EQ(dec("A", &len), 0x41u);
  EXPECT_EQ(len, 1);
  EXPECT_EQ(dec("\u00e9", &len), 0xE9u);
  EXPECT_EQ(len, 2);
  EXPECT_EQ(dec("\u20ac", &len), 0x20ACu);
  EXPECT_EQ(len, 3);
  EXPECT_EQ(dec("\U0001F600", &len), 0x1F600u);
  EXPECT_EQ(len, 4);
  for (const char* bad : {"\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80",
                          "\xf5\x80\x80\x80", "\xff", "\xc3", "\xe2\x82"}) {
    EXPECT_EQ(dec(bad, &len), sk::data::kInvalidUtf8) << "bytes of '" << bad << "'";
    EXPECT_EQ(len, 1);
  }
}

TEST(Pretokenize, classes_from_utf8proc) {
  using sk::data::char_class;
  // The White_Space set, exactly.
  const uint32_t spaces[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,   0x1680,
                             0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
                             0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  int count = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp)
    if (char_class(cp) == CharClass::Space) ++count;
  EXPECT_EQ(count, 25);
  for (uint32_t cp : spaces) EXPECT_EQ(char_class(cp), CharClass::Space) << std::hex << cp;
  EXPECT_EQ(char_class(0x200B), CharClass::Other);
  EXPECT_EQ(char_class(0x180E), CharClass::Other);  // Zs before Unicode 6.3, Cf now
  EXPECT_EQ(char_class('a'), CharClass::Letter);
  EXPECT_EQ(char_class(0x01C5), CharClass::Letter);  // Lt
  EXPECT_EQ(char_class(0x02B0), CharClass::Letter);  // Lm
  EXPECT_EQ(char_class(0x4E2D), CharClass::Letter);  // Lo
  EXPECT_EQ(char_class('7'), CharClass::Number);
  EXPECT_EQ(char_class(0x216B), CharClass::Number);  // Nl
  EXPECT_EQ(char_class(0x00BD), CharClass::Number);  // No
  EXPECT_EQ(char_class(0x0301), CharClass::Other);   // Mn
  EXPECT_EQ(char_class('_'), CharClass::Other);
  EXPECT_EQ(char_class(sk::data::kInvalidUtf8), CharClass::Other);
}

TEST(Pretokenize, nfc) {
  using sk::data::nfc_normalize;
  EXPECT_EQ(nfc_normalize("cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(nfc_normalize("\u212b"), "\u00c5");              // singleton (Angstrom sign)
  EXPECT_EQ(nfc_normalize("\u1100\u1161\u11a8"), "\uac01");  // Hangul jamo compose
  EXPECT_EQ(nfc_normalize("plain ascii"), "plain ascii");
  EXPECT_EQ(nfc_normalize("e\xff\u0301"), "e\xff\u0301");  // invalid byte: runs apart
  EXPECT_EQ(nfc_normalize("\xff"
                          "e\u0301\xfe"),
            "\xff\u00e9\xfe");
  EXPECT_TRUE(sk::data::nfc_trivially_stable("h\u00e9llo \u02ff"));
  EXPECT_FALSE(sk::data::nfc_trivially_stable("e\u0301"));
}

// The fast path (text below U+0300 is left alone) agrees with utf8proc on every such code point
// and on pairs of them (sampled; all 590k pairs were checked once during development).
TEST(Pretokenize, nfc_fast_path_is_exact) {
  std::mt19937 rng(3);
  auto enc = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s.push_back(char(cp));
    } else {
      s.push_back(char(0xC0 | (cp >> 6)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    }
    return s;
  };
  for (uint32_t a = 1; a < 0x300; ++a) {
    const std::string s = enc(a) + enc(1 + rng() % 0x2FF) + enc(1 + rng() % 0x2FF);
    ASSERT_TRUE(sk::data::nfc_trivially_stable(s));
    // Force the slow path with a trailing mark that composes with nothing here (U+0334).
    const std::string slow = sk::data::nfc_normalize(s + "\xcc\xb4");
    ASSERT_EQ(slow, s + "\xcc\xb4") << "code point " << std::hex << a;
  }
}
