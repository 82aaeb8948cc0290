// Tokenizer (src/data/tokenizer.cpp, bpe_model.cpp, bpe_sha256.cpp): known GPT-2 encodings,
// special tokens, round trips on random bytes (GPT-2 and the tiny tokenizer.json fixture),
// added/normalized tokens, the two merge-loop paths, the whole-token table, SHA-256.
// GPT-2 cases skip without data/tokenizers/gpt2 (scripts/get_gpt2_tokenizer.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>

#include "data/bpe_files.h"
#include "data/bpe_model.h"
#include "data/bpe_sha256.h"
#include "data/tokenizer.h"
#include "tokenizer_test_util.h"
#include "util/check.h"

using sk::data::Tokenizer;
using sk::testing::fixture_path;
using sk::testing::gpt2_tokenizer;
using sk::testing::tiny_tokenizer;
using Ids = std::vector<uint32_t>;

namespace {

// Random byte strings: a mix of raw random bytes (invalid UTF-8 included), valid multi-byte
// characters, whitespace, contractions and pieces of special/added tokens.
std::string random_text(std::mt19937& rng, size_t len) {
  static const char* pieces[] = {" ",        "  ",         "\t",         "\n",
                                 "\r\n",     "'s",         "'LL",        "'",
                                 "a",        "Z",          "9",          "!",
                                 "\u00a0",   "\u3000",     "\u00e9",     "e\u0301",
                                 "\u4e2d",   "\U0001F600", "\u200d",     "<|endoftext|>",
                                 "<|",       "caf\u00e9",  "cafe\u0301", "\u212b",
                                 "\xff",     "\xc3",       "\xe2\x82",   "\xed\xa0\x80",
                                 "\xf0\x9f", "hello",      " world"};
  std::string s;
  while (s.size() < len) {
    const uint32_t r = rng() % 10;
    if (r < 3) {
      s.push_back(char(rng() % 256));
    } else {
      s += pieces[rng() % (sizeof(pieces) / sizeof(pieces[0]))];
    }
  }
  s.resize(len);  // may cut a character: more invalid UTF-8
  return s;
}

}  // namespace

TEST(Sha256, nist_vectors) {
  using sk::data::sha256_hex;
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  sk::data::Sha256 h;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.update(chunk);
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ByteLevel, mapping_is_gpt2s) {
  const auto& b2u = sk::data::byte_to_unicode();
  EXPECT_EQ(b2u['!'], "!");
  EXPECT_EQ(b2u[' '], "\u0120");   // 'Ġ'
  EXPECT_EQ(b2u['\n'], "\u010a");  // 'Ċ'
  EXPECT_EQ(b2u[0], "\u0100");
  EXPECT_EQ(b2u[0xAD], "\u0143");  // soft hyphen is the last of the 68 remapped bytes
  EXPECT_EQ(b2u[0xFF], "\u00ff");
  for (int b = 0; b < 256; ++b) EXPECT_EQ(sk::data::unicode_to_bytes(b2u[b]), std::string(1, char(b)));
  EXPECT_FALSE(sk::data::unicode_to_bytes(" ").has_value());  // U+0020 is not in the alphabet
}

// Encodings checked independently: OpenAI's published examples / tiktoken's "gpt2" encoding
// ("Hello world" -> [15496, 995], "<|endoftext|>" -> 50256 and its plain-text form) and
// encoder.py's algorithm in scripts/data/make_tokenizer_fixture.py.
TEST(Gpt2, known_encodings) {
  SK_REQUIRE_GPT2();
  const Tokenizer& t = *gpt2_tokenizer();
  EXPECT_EQ(t.encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(t.encode("hello world"), (Ids{31373, 995}));
  EXPECT_EQ(t.encode(" Hello"), (Ids{18435}));
  EXPECT_EQ(t.encode(" "), (Ids{220}));
  EXPECT_EQ(t.encode("  "), (Ids{220, 220}));
  EXPECT_EQ(t.encode("\n"), (Ids{198}));
  EXPECT_EQ(t.encode("\n\n"), (Ids{628}));
  EXPECT_EQ(t.encode("I'll've"), (Ids{40, 1183, 1053}));
  EXPECT_EQ(t.encode("12345"), (Ids{10163, 2231}));
  EXPECT_EQ(t.encode("h\u00e9llo w\u00f6rld"), (Ids{71, 2634, 18798, 266, 30570, 335}));
  EXPECT_EQ(t.encode(""), Ids{});
}

TEST(Gpt2, special_token_only_when_allowed) {
  SK_REQUIRE_GPT2();
  const Tokenizer& t = *gpt2_tokenizer();
  EXPECT_EQ(t.encode("<|endoftext|>", true), (Ids{50256}));
  EXPECT_EQ(t.encode("<|endoftext|>", false), (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(t.encode("<|endoftext|>"), (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(t.encode("a<|endoftext|>b", true), (Ids{64, 50256, 65}));
  EXPECT_EQ(t.encode("<|endoftext|><|endoftext|>", true), (Ids{50256, 50256}));
  EXPECT_EQ(t.encode("<|endoftext", true), (Ids{27, 91, 437, 1659, 5239}));
  EXPECT_EQ(t.eot_id(), 50256u);
  EXPECT_EQ(t.token_id("<|endoftext|>"), 50256u);
  EXPECT_FALSE(t.token_id("hello").has_value());
  EXPECT_EQ(t.decode({50256}), "<|endoftext|>");
}

TEST(Gpt2, metadata) {
  SK_REQUIRE_GPT2();
  const Tokenizer& t = *gpt2_tokenizer();
  EXPECT_EQ(t.vocab_size(), 50257u);
  EXPECT_NE(t.name().find("encoder.json + vocab.bpe"), std::string::npos) << t.name();
  EXPECT_EQ(t.hash().size(), 64u);
  EXPECT_EQ(Tokenizer::load(sk::testing::gpt2_dir()).hash(), t.hash());  // stable
  EXPECT_NE(t.hash(), tiny_tokenizer().hash());
  EXPECT_EQ(t.token_bytes(995), " world");
  EXPECT_EQ(t.token_bytes(198), "\n");
  EXPECT_EQ(t.decode({15496, 995}), "Hello world");
  try {
    t.decode({15496, 50257});
    FAIL() << "expected sk::Error";
  } catch (const sk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 50257 at position 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.token_bytes(1u << 30), sk::Error);
}

TEST(Gpt2, round_trip_random_bytes) {
  SK_REQUIRE_GPT2();
  const Tokenizer& t = *gpt2_tokenizer();
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t len = iter < 300 ? size_t(iter) : size_t(rng() % (iter % 100 == 0 ? 20000 : 400));
    const std::string s = random_text(rng, len);
    for (bool allow : {false, true}) {
      const Ids ids = t.encode(s, allow);
      ASSERT_EQ(t.decode(ids), s) << "iter " << iter << " allow_special " << allow;
      if (!allow) ASSERT_EQ(std::count(ids.begin(), ids.end(), 50256u), 0);
    }
  }
}

TEST(Gpt2, encode_into_appends) {
  SK_REQUIRE_GPT2();
  const Tokenizer& t = *gpt2_tokenizer();
  Ids out = {7, 8};
  EXPECT_EQ(t.encode_into("Hello world", out), 2u);
  EXPECT_EQ(out, (Ids{7, 8, 15496, 995}));
  EXPECT_EQ(t.encode_into("", out), 0u);
}

TEST(Gpt2, concurrent_encode_is_consistent) {
  SK_REQUIRE_GPT2();
  const Tokenizer& t = *gpt2_tokenizer();
  const std::string text = sk::testing::slurp(fixture_path("tokenizer_torture.txt"));
  const Ids want = t.encode(text, true);
  std::vector<Ids> got(4);
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i) th.emplace_back([&, i] { got[i] = t.encode(text, true); });
  for (auto& x : th) x.join();
  for (const Ids& g : got) EXPECT_EQ(g, want);
}

TEST(Tiny, loads_fixture) {
  const Tokenizer& t = tiny_tokenizer();
  EXPECT_EQ(t.vocab_size(), 418u);  // 256 bytes + 160 merges + 2 added
  EXPECT_EQ(t.eot_id(), 416u);
  EXPECT_EQ(t.token_id("caf\u00e9"), 417u);
  EXPECT_EQ(t.hash(), Tokenizer::load(fixture_path("tiny_tokenizer.json")).hash());
}

TEST(Tiny, added_tokens) {
  const Tokenizer& t = tiny_tokenizer();
  // "café" is a non-special added token with normalized: true: matched after NFC, with or
  // without allow_special (as Hugging Face tokenizers does).
  EXPECT_EQ(t.encode("caf\u00e9"), (Ids{417}));
  EXPECT_EQ(t.encode("cafe\u0301"), (Ids{417}));
  EXPECT_EQ(t.encode("caf\u00e9", true), (Ids{417}));
  EXPECT_EQ(t.decode(t.encode("cafe\u0301s")), "caf\u00e9s");
  // "<|endoftext|>" is special (normalized: false): only with allow_special.
  EXPECT_EQ(t.encode("<|endoftext|>", true), (Ids{416}));
  const Ids plain = t.encode("<|endoftext|>");
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 416u), 0);
  EXPECT_EQ(t.decode(plain), "<|endoftext|>");
  const Ids mixed = t.encode("x<|endoftext|>caf\u00e9", true);
  ASSERT_GE(mixed.size(), 3u);
  EXPECT_EQ(mixed[mixed.size() - 2], 416u);
  EXPECT_EQ(mixed.back(), 417u);
}

TEST(Tiny, normalizes_nfc) {
  const Tokenizer& t = tiny_tokenizer();
  EXPECT_EQ(t.normalize("e\u0301"), "\u00e9");
  EXPECT_EQ(t.encode("e\u0301"), t.encode("\u00e9"));
  if (const Tokenizer* g = gpt2_tokenizer()) {
    EXPECT_EQ(g->normalize("e\u0301"), "e\u0301");  // GPT-2 has no normalizer
    EXPECT_NE(g->encode("e\u0301"), g->encode("\u00e9"));
  }
}

// NFC runs between the added tokens matched in the raw text (as in Hugging Face tokenizers):
// U+0338 after "<|endoftext|>" composes with '>' only when the special token is not matched.
TEST(Tiny, nfc_between_special_tokens) {
  const Tokenizer& t = tiny_tokenizer();
  const std::string x = "<|endoftext|>\u0338";
  EXPECT_EQ(t.normalize(x, false), "<|endoftext|\u226f");
  EXPECT_EQ(t.normalize(x, true), x);
  EXPECT_EQ(t.decode(t.encode(x, true)), x);
  EXPECT_EQ(t.encode(x, true)[0], 416u);
  EXPECT_EQ(t.decode(t.encode(x, false)), "<|endoftext|\u226f");
}

TEST(Tiny, round_trip_random_bytes) {
  const Tokenizer& t = tiny_tokenizer();
  std::mt19937 rng(99);
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t len = iter < 300 ? size_t(iter) : size_t(rng() % (iter % 100 == 0 ? 20000 : 400));
    const std::string s = random_text(rng, len);
    for (bool allow : {false, true}) {
      const Ids ids = t.encode(s, allow);
      ASSERT_EQ(t.decode(ids), t.normalize(s, allow)) << "iter " << iter << " allow_special " << allow;
      for (uint32_t id : ids) ASSERT_LT(id, t.vocab_size());
      if (!allow) ASSERT_EQ(std::count(ids.begin(), ids.end(), 416u), 0);
    }
  }
}

// The array + linear-scan path and the heap path of the merge loop give the same ids, and the
// whole-token table agrees with the merge loop.
TEST(BpeModel, merge_paths_agree) {
  std::vector<sk::data::BpeModel> models;
  {
    auto spec = sk::data::read_hf_tokenizer_json(fixture_path("tiny_tokenizer.json"));
    models.push_back(sk::data::BpeModel::build(spec.vocab, spec.merges, false, spec.source));
  }
  if (sk::testing::gpt2_present()) {
    auto spec = sk::data::read_gpt2_files(sk::testing::gpt2_dir());
    models.push_back(sk::data::BpeModel::build(spec.vocab, spec.merges, false, spec.source));
  }
  std::mt19937 rng(5);
  const std::string alphabet[] = {"ab", "the ", " ", "e", "in", "=", "\xc3\xa9", "0", "xyz"};
  for (const auto& m : models) {
    for (int iter = 0; iter < 1500; ++iter) {
      std::string w;
      const size_t len = 1 + rng() % (iter % 10 == 0 ? 600 : 40);
      const std::string& a = alphabet[rng() % 9];
      const std::string& b = alphabet[rng() % 9];
      while (w.size() < len) w += (rng() % 3 ? a : b);
      Ids scan, heap, piece;
      m.merge_bytes(w, scan, SIZE_MAX);
      m.merge_bytes(w, heap, 0);
      m.encode_piece(w, piece);
      ASSERT_EQ(scan, heap) << "word '" << w << "'";
      ASSERT_EQ(piece, scan) << "word '" << w << "'";
      std::string back;
      for (uint32_t id : scan) back += m.token_bytes(id);
      ASSERT_EQ(back, w);
    }
  }
}

// Merge order is by rank, leftmost first on ties, whatever the order of appearance.
TEST(BpeModel, lowest_rank_then_leftmost) {
  const auto& b2u = sk::data::byte_to_unicode();
  std::vector<std::pair<std::string, uint32_t>> vocab;
  for (int b = 0; b < 256; ++b) vocab.emplace_back(b2u[b], uint32_t(b));
  vocab.emplace_back("bc", 256);
  vocab.emplace_back("ab", 257);
  vocab.emplace_back("aa", 258);
  vocab.emplace_back("aaa", 259);
  // Ranks: "b c" 0, "a b" 1, "a a" 2, "aa a" 3.
  auto m = sk::data::BpeModel::build(vocab, {{"b", "c"}, {"a", "b"}, {"a", "a"}, {"aa", "a"}}, false, "test");
  for (size_t thr : {size_t(0), SIZE_MAX}) {
    Ids out;
    m.merge_bytes("abc", out, thr);  // "bc" (rank 0) before "ab" (rank 1)
    EXPECT_EQ(out, (Ids{'a', 256}));
    out.clear();
    m.merge_bytes("aaaa", out, thr);  // leftmost "aa" first, then "aa"+"aa" has no merge
    EXPECT_EQ(out, (Ids{258, 258}));
    out.clear();
    m.merge_bytes("aaa", out, thr);  // "aa" then "aa a"
    EXPECT_EQ(out, (Ids{259}));
  }
}

TEST(Tokenizer, bench_reports_throughput) {
  const Tokenizer& t = tiny_tokenizer();
  const double mbps = sk::data::bench_tokenizer_mbps(t, "hello world, caf\u00e9 12345\n");
  EXPECT_GT(mbps, 0.0);
  EXPECT_THROW(sk::data::bench_tokenizer_mbps(t, ""), sk::Error);
}
