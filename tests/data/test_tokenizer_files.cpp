// Tokenizer file formats (src/data/bpe_files.cpp): bad files give sk::Error naming the file and
// what is wrong; equivalent files (merges as strings or pairs, ByteLevel alone or after a GPT-2
// Split, GPT-2 files or the same content as tokenizer.json) give the same encodings and hash.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "tokenizer_test_util.h"
#include "util/check.h"

using nlohmann::json;
using sk::data::Tokenizer;
using sk::testing::fixture_path;
using sk::testing::slurp;
using sk::testing::spit;

namespace {

// Expects load to throw sk::Error whose message contains every one of parts.
template <typename F>
void expect_error(F&& load, std::initializer_list<std::string> parts) {
  try {
    load();
    ADD_FAILURE() << "expected sk::Error";
  } catch (const sk::Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

json tiny_json() { return json::parse(slurp(fixture_path("tiny_tokenizer.json"))); }

// Writes j to a fresh tokenizer.json and returns its path.
std::string write_json(const json& j, const std::string& tag) {
  const std::string path = sk::testing::temp_dir(tag) + "/tokenizer.json";
  spit(path, j.dump());
  return path;
}

std::string torture() { return slurp(fixture_path("tokenizer_torture.txt")); }

}  // namespace

TEST(TokenizerFiles, missing_files) {
  const std::string dir = sk::testing::temp_dir("missing");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/encoder.json", "does not exist"});
  expect_error([&] { Tokenizer::load_hf_json(dir + "/nope.json"); }, {dir + "/nope.json", "does not exist"});
  expect_error([&] { Tokenizer::load(dir); }, {dir, "neither tokenizer.json nor encoder.json"});
  expect_error([&] { Tokenizer::load(dir + "/x.txt"); }, {dir + "/x.txt", "does not exist"});
  spit(dir + "/encoder.json", "{}");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/vocab.bpe", "does not exist"});
}

TEST(TokenizerFiles, malformed_json) {
  const std::string dir = sk::testing::temp_dir("malformed");
  spit(dir + "/encoder.json", "{\"a\": 0, ");
  spit(dir + "/vocab.bpe", "#version: 0.2\n");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/encoder.json", "malformed JSON"});
  spit(dir + "/encoder.json", "[1, 2]");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/encoder.json", "must be an object"});
  spit(dir + "/encoder.json", "{\"a\": \"zero\"}");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/encoder.json", "non-negative integer"});
  const std::string path = dir + "/tokenizer.json";
  spit(path, "{\"model\": ");
  expect_error([&] { Tokenizer::load_hf_json(path); }, {path, "malformed JSON"});
}

// GPT-2 style files built from the tiny fixture's vocabulary and merges.
TEST(TokenizerFiles, gpt2_format_errors) {
  const json tj = tiny_json();
  const std::string dir = sk::testing::temp_dir("gpt2fmt");
  json enc = tj["model"]["vocab"];
  enc["<|endoftext|>"] = 416;
  spit(dir + "/encoder.json", enc.dump());
  std::string merges = "#version: 0.2\n";
  for (const auto& m : tj["model"]["merges"]) merges += m.get<std::string>() + "\n";
  spit(dir + "/vocab.bpe", merges);
  const Tokenizer ok = Tokenizer::load_gpt2_files(dir);  // well-formed
  EXPECT_EQ(ok.eot_id(), 416u);
  // A merge line with one token.
  spit(dir + "/vocab.bpe", "#version: 0.2\n\u0120 t\nonetoken\n");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/vocab.bpe", "line 3", "onetoken"});
  // Three tokens.
  spit(dir + "/vocab.bpe", "#version: 0.2\na b c\n");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {dir + "/vocab.bpe", "line 2"});
  // A merge naming a token that is not in the vocabulary.
  spit(dir + "/vocab.bpe", "#version: 0.2\nq \u0120zzz\n");
  expect_error([&] { Tokenizer::load_gpt2_files(dir); }, {"vocab.bpe", "merge 1", "not in the vocabulary"});
  // CRLF line ends and a missing #version line are accepted.
  std::string crlf;
  for (const auto& m : tj["model"]["merges"]) crlf += m.get<std::string>() + "\r\n";
  spit(dir + "/vocab.bpe", crlf);
  EXPECT_EQ(Tokenizer::load_gpt2_files(dir).hash(), ok.hash());
}

TEST(TokenizerFiles, unsupported_model_and_parts) {
  json j = tiny_json();
  j["model"]["type"] = "WordPiece";
  std::string p = write_json(j, "model");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "model.type", "WordPiece"});

  j = tiny_json();
  j["model"].erase("type");
  p = write_json(j, "notype");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "model.type is missing"});

  j = tiny_json();
  j["normalizer"] = {{"type", "NFKC"}};
  p = write_json(j, "nfkc");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "normalizer.type", "NFKC"});

  j = tiny_json();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
  p = write_json(j, "seqnorm");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "normalizer.normalizers[1].type", "Lowercase"});

  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  p = write_json(j, "metaspace");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "pre_tokenizer.type", "Metaspace"});

  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
  p = write_json(j, "prefix");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "add_prefix_space"});

  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  p = write_json(j, "split");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "pretokenizers[0]", "GPT-2 pattern"});

  j = tiny_json();
  j["pre_tokenizer"] = nullptr;
  p = write_json(j, "nopre");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "pre_tokenizer"});

  j = tiny_json();
  j["model"]["dropout"] = 0.1;
  p = write_json(j, "dropout");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "model.dropout", "0.1"});

  j = tiny_json();
  j["model"]["continuing_subword_prefix"] = "##";
  p = write_json(j, "prefix2");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "continuing_subword_prefix"});

  j = tiny_json();
  j["added_tokens"][1]["single_word"] = true;
  p = write_json(j, "single");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "added_tokens[1].single_word"});
}

TEST(TokenizerFiles, inconsistent_vocabulary) {
  json j = tiny_json();
  j["model"]["vocab"].erase("\u0120");  // the token of byte 0x20
  std::string p = write_json(j, "nobyte");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "byte 0x20"});

  j = tiny_json();
  j["model"]["merges"].push_back("zz \u0120q");
  p = write_json(j, "badmerge");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "merge 161", "'zz' is not in the vocabulary"});

  j = tiny_json();
  j["model"]["merges"].push_back("single");
  p = write_json(j, "onetok");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "model.merges[160]", "single"});

  j = tiny_json();
  j["model"]["vocab"]["dup"] = 5;
  p = write_json(j, "dupid");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "id 5 is used by both"});

  j = tiny_json();
  j["added_tokens"][0]["id"] = 3;
  p = write_json(j, "addedid");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "<|endoftext|>", "has id 3"});

  j = tiny_json();
  j["added_tokens"][1]["id"] = 416;
  p = write_json(j, "addedshare");
  expect_error([&] { Tokenizer::load_hf_json(p); }, {p, "share id 416"});
}

TEST(TokenizerFiles, equivalent_forms) {
  const Tokenizer& base = sk::testing::tiny_tokenizer();
  const std::string text = torture();
  const auto want = base.encode(text, true);
  // Merges as [a, b] pairs (tokenizers >= 0.20 writes them so).
  json j = tiny_json();
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m;
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  Tokenizer t1 = Tokenizer::load(write_json(j, "pairs"));
  EXPECT_EQ(t1.encode(text, true), want);
  EXPECT_EQ(t1.hash(), base.hash());
  // ByteLevel alone (use_regex true), and the NFC normalizer inside a Sequence.
  j = tiny_json();
  j["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  // (Loaded through its directory: load() finds tokenizer.json there.)
  Tokenizer t2 = Tokenizer::load(std::filesystem::path(write_json(j, "bytelevel")).parent_path().string());
  EXPECT_EQ(t2.encode(text, true), want);
  EXPECT_EQ(t2.hash(), base.hash());
  // Without the normalizer the encodings differ exactly where NFC changes the text.
  j["normalizer"] = nullptr;
  Tokenizer t3 = Tokenizer::load(write_json(j, "nonorm"));
  EXPECT_EQ(t3.encode(base.normalize(text, true), true), want);
  EXPECT_NE(t3.hash(), base.hash());
}

// The GPT-2 files and a tokenizer.json with the same content load to the same tokenizer.
TEST(TokenizerFiles, gpt2_files_equal_hf_json) {
  SK_REQUIRE_GPT2();
  const Tokenizer& g = *sk::testing::gpt2_tokenizer();
  json j = tiny_json();
  j["model"]["vocab"] = json::parse(slurp(sk::testing::gpt2_dir() + "/encoder.json"));
  json merges = json::array();
  const std::string bpe = slurp(sk::testing::gpt2_dir() + "/vocab.bpe");
  size_t pos = bpe.find('\n') + 1;
  while (pos < bpe.size()) {
    size_t e = bpe.find('\n', pos);
    if (e == std::string::npos) e = bpe.size();
    if (e > pos) merges.push_back(bpe.substr(pos, e - pos));
    pos = e + 1;
  }
  j["model"]["merges"] = merges;
  j["normalizer"] = nullptr;
  j["added_tokens"] = {{{"id", 50256},
                        {"content", "<|endoftext|>"},
                        {"single_word", false},
                        {"lstrip", false},
                        {"rstrip", false},
                        {"normalized", false},
                        {"special", true}}};
  Tokenizer h = Tokenizer::load(write_json(j, "gpt2json"));
  EXPECT_EQ(h.hash(), g.hash());
  const std::string text = torture();
  EXPECT_EQ(h.encode(text, true), g.encode(text, true));
  EXPECT_EQ(h.vocab_size(), 50257u);
}

// lstrip / rstrip on an added token take the neighbouring whitespace into the token.
TEST(TokenizerFiles, added_token_strip) {
  json j = tiny_json();
  j["added_tokens"].push_back({{"id", 418},
                               {"content", "<mask>"},
                               {"single_word", false},
                               {"lstrip", true},
                               {"rstrip", true},
                               {"normalized", false},
                               {"special", true}});
  Tokenizer t = Tokenizer::load(write_json(j, "strip"));
  const auto ids = t.encode("a  <mask>\t b", true);
  const auto a = t.encode("a"), b = t.encode("b");
  ASSERT_EQ(ids.size(), a.size() + 1 + b.size());
  EXPECT_EQ(ids[a.size()], 418u);
  EXPECT_EQ(t.decode(ids), "a<mask>b");  // the stripped whitespace belongs to the token
  EXPECT_EQ(t.normalize("a  <mask>\t b", true), "a<mask>b");
}
