// Parity with Hugging Face `tokenizers`: tests/data/fixtures/gpt2_parity.json holds, per text
// file and tokenizer (GPT-2 from encoder.json + vocab.bpe; the tiny tokenizer.json fixture), what
// `tokenizers` produced (scripts/data/make_tokenizer_fixture.py parity, run on the GPU machine
// where `tokenizers` and tiktoken are installed): the file's sha256 and length, the token count,
// the sha256 of the ids (little-endian uint32), the first 200 ids and per-1024-id block digests.
// This test encodes each listed file that is present with sparsek's tokenizer and fails on any
// difference, saying where the first one is. Files: tests/data/fixtures/tokenizer_torture.txt
// (always present) and data/corpora/python-docs-sample/ (scripts/data/make_parity_sample.sh;
// skipped when absent). GPT-2 parts skip without data/tokenizers/gpt2.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data/bpe_sha256.h"
#include "data/tokenizer.h"
#include "tokenizer_test_util.h"

using nlohmann::json;
using sk::data::Tokenizer;

namespace {

std::string ids_sha256(const std::vector<uint32_t>& ids, size_t begin, size_t end) {
  sk::data::Sha256 h;
  for (size_t i = begin; i < end; ++i) {
    const uint32_t v = ids[i];
    const unsigned char le[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    h.update(le, 4);
  }
  return h.hex_digest();
}

std::string printable(std::string s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c < 0x20)
      out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else
      out.push_back(char(c));
  }
  return out;
}

struct Totals {
  size_t files = 0, bytes = 0, tokens = 0, skipped = 0;
};

// Checks one tokenizer's records; returns what was verified.
Totals check_tokenizer(const Tokenizer& tok, const json& entry, bool allow_special) {
  Totals t;
  const std::string root = sk::testing::repo_root();
  for (const json& rec : entry["files"]) {
    const std::string rel = rec["path"];
    const std::string path = root + "/" + rel;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      ++t.skipped;
      continue;
    }
    const std::string text = sk::testing::slurp(path);
    if (sk::data::sha256_hex(text) != rec["sha256"].get<std::string>()) {
      // A committed file must match; a corpus file from a different package version is skipped.
      EXPECT_NE(rel.rfind("tests/", 0), 0u) << rel << " differs from the file the fixture was made from";
      std::cout << "[ parity ] " << entry["name"].get<std::string>() << ": " << rel
                << " differs from the fixture's copy (sha256): skipped\n";
      ++t.skipped;
      continue;
    }
    const std::vector<uint32_t> ids = tok.encode(text, allow_special);
    const std::string what = entry["name"].get<std::string>() + " on " + rel;
    bool same = ids.size() == rec["tokens"].get<size_t>() &&
                ids_sha256(ids, 0, ids.size()) == rec["ids_sha256"].get<std::string>();
    if (!same) {
      // Locate the first difference: the first 200 ids, then the 1024-id blocks.
      const auto first = rec["first_ids"].get<std::vector<uint32_t>>();
      size_t k = 0;
      while (k < first.size() && k < ids.size() && ids[k] == first[k]) ++k;
      std::ostringstream where;
      if (k < first.size()) {
        where << "first difference at token " << k << ": expected " << first[k] << ", got "
              << (k < ids.size() ? std::to_string(ids[k]) : std::string("(end)"));
      } else {
        const auto blocks = rec["block_sha256_8"].get<std::vector<std::string>>();
        size_t b = 0;
        while (b < blocks.size() &&
               ids_sha256(ids, b * 1024, std::min(ids.size(), b * 1024 + 1024)).substr(0, 8) == blocks[b])
          ++b;
        where << "first difference in tokens [" << b * 1024 << ", " << b * 1024 + 1024 << ")";
        k = b * 1024;
      }
      size_t byte_off = 0;
      for (size_t i = 0; i < std::min(k, ids.size()); ++i) byte_off += tok.token_bytes(ids[i]).size();
      std::vector<uint32_t> around(ids.begin() + std::min(k, ids.size()), ids.begin() + std::min(k + 12, ids.size()));
      std::ostringstream got;
      for (uint32_t id : around) got << id << " ";
      ADD_FAILURE() << what << ": " << ids.size() << " tokens, expected " << rec["tokens"].get<size_t>() << "; "
                    << where.str() << " (byte offset ~" << byte_off << ", text there: \""
                    << printable(text.substr(byte_off, 60)) << "\"; our ids from there: " << got.str() << ")";
    }
    ++t.files;
    t.bytes += text.size();
    t.tokens += ids.size();
  }
  return t;
}

const json& fixture() {
  static const json j = json::parse(sk::testing::slurp(sk::testing::fixture_path("gpt2_parity.json")));
  return j;
}

const json& entry(const std::string& name) {
  for (const json& e : fixture()["tokenizers"])
    if (e["name"] == name) return e;
  throw std::runtime_error("gpt2_parity.json has no tokenizer " + name);
}

void report(const std::string& name, const Totals& t) {
  std::cout << "[ parity ] " << name << " vs " << fixture()["engine"].get<std::string>() << ": " << t.files
            << " files, " << t.bytes << " bytes, " << t.tokens << " tokens identical; " << t.skipped
            << " listed files absent or different (skipped)\n";
}

}  // namespace

TEST(Parity, gpt2_matches_hf_tokenizers) {
  SK_REQUIRE_GPT2();
  const Totals t = check_tokenizer(*sk::testing::gpt2_tokenizer(), entry("gpt2"), fixture()["allow_special"]);
  report("gpt2", t);
  EXPECT_GE(t.files, 1u);
  if (t.bytes < 1000000)
    std::cout << "[ parity ] note: under 1 MB checked; scripts/data/make_parity_sample.sh builds the "
                 "Python docs sample the fixture lists\n";
}

TEST(Parity, tiny_matches_hf_tokenizers) {
  const Totals t = check_tokenizer(sk::testing::tiny_tokenizer(), entry("tiny"), fixture()["allow_special"]);
  report("tiny", t);
  EXPECT_GE(t.files, 1u);
}

// The fixture lists the committed torture text for both tokenizers, so the tiny part always runs.
TEST(Parity, fixture_is_well_formed) {
  const json& f = fixture();
  ASSERT_TRUE(f.contains("engine"));
  for (const char* name : {"gpt2", "tiny"}) {
    const json& e = entry(name);
    bool has_torture = false;
    for (const json& r : e["files"]) {
      has_torture |= r["path"] == "tests/data/fixtures/tokenizer_torture.txt";
      EXPECT_LE(r["first_ids"].size(), 200u);
    }
    EXPECT_TRUE(has_torture) << name;
  }
}
