// Readers for encoder.json + vocab.bpe and tokenizer.json (see bpe_files.h).
// Tests: tests/data/test_tokenizer_files.cpp; fuzzed by fuzz/fuzz_gpt2_files.cpp and
// fuzz/fuzz_hf_json.cpp.
#include "data/bpe_files.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/check.h"

namespace sk::data {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

using json = nlohmann::json;

// A JSON value printed for an error message, shortened.
std::string show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

std::string show_str(std::string_view s) {
  std::string out(s.substr(0, 80));
  if (s.size() > 80) out += "...";
  return out;
}

json parse_json(std::string_view text, const std::string& where) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    SK_FAIL(where, ": malformed JSON: ", e.what());
  }
}

bool get_bool(const json& obj, const char* key, bool def, const std::string& where, const char* ctx) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  SK_CHECK(it->is_boolean(), where, ": ", ctx, ".", key, " must be true or false, got ", show(*it));
  return it->get<bool>();
}

uint32_t get_id(const json& v, const std::string& where, const std::string& ctx) {
  SK_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), where, ": ", ctx,
           " must be a non-negative integer id, got ", show(v));
  const uint64_t id = v.get<uint64_t>();
  SK_CHECK(id < (1ull << 31), where, ": ", ctx, " id ", id, " is out of range (< 2^31)");
  return uint32_t(id);
}

// model.vocab / encoder.json: {"token": id, ...}.
void read_vocab(const json& v, const std::string& where, const char* ctx, BpeSpec& spec) {
  SK_CHECK(v.is_object(), where, ": ", ctx, " must be an object {token: id}, got ", show(v));
  spec.vocab.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it)
    spec.vocab.emplace_back(it.key(), get_id(it.value(), where, std::string(ctx) + "[\"" + show_str(it.key()) + "\"]"));
}

// "a b" -> (a, b): exactly one space, two non-empty parts (as `tokenizers` reads merges).
std::pair<std::string, std::string> split_merge(std::string_view line, const std::string& where,
                                                const std::string& ctx) {
  const size_t sp = line.find(' ');
  SK_CHECK(sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
               line.find(' ', sp + 1) == std::string_view::npos,
           where, ": ", ctx, ": expected two tokens separated by one space, got '", show_str(line), "'");
  return {std::string(line.substr(0, sp)), std::string(line.substr(sp + 1))};
}

bool is_gpt2_split(const json& pt) {
  if (!pt.is_object() || pt.value("type", json()) != "Split") return false;
  auto pat = pt.find("pattern");
  if (pat == pt.end() || !pat->is_object() || !pat->contains("Regex")) return false;
  const json& re = (*pat)["Regex"];
  if (!re.is_string() || re.get<std::string>() != kGpt2Pattern) return false;
  auto beh = pt.find("behavior");
  if (beh != pt.end() && *beh != "Isolated") return false;
  auto inv = pt.find("invert");
  if (inv != pt.end() && !inv->is_null() && *inv != false) return false;
  return true;
}

void check_byte_level(const json& pt, const std::string& where, const std::string& ctx, bool split_before) {
  SK_CHECK(!get_bool(pt, "add_prefix_space", false, where, ctx.c_str()), where, ": ", ctx,
           ".add_prefix_space is true; only false is supported (GPT-2 adds no space)");
  const bool use_regex = get_bool(pt, "use_regex", true, where, ctx.c_str());
  SK_CHECK(use_regex || split_before, where, ": ", ctx,
           ".use_regex is false with no Split before it: the text would not be pre-tokenized, "
           "which is not GPT-2 style");
}

// pre_tokenizer: ByteLevel, or Sequence [Split(GPT-2 pattern, Isolated), ByteLevel].
void check_pre_tokenizer(const json& root, const std::string& where) {
  auto it = root.find("pre_tokenizer");
  SK_CHECK(it != root.end() && !it->is_null(), where,
           ": pre_tokenizer is missing or null; a ByteLevel pre-tokenizer is required");
  const json& pt = *it;
  SK_CHECK(pt.is_object() && pt.contains("type") && pt["type"].is_string(), where,
           ": pre_tokenizer must be an object with a type, got ", show(pt));
  const std::string type = pt["type"];
  if (type == "ByteLevel") {
    check_byte_level(pt, where, "pre_tokenizer", false);
    return;
  }
  SK_CHECK(type == "Sequence", where, ": pre_tokenizer.type \"", type,
           "\" is not supported (ByteLevel, or a Sequence of a GPT-2 Split and ByteLevel)");
  auto seq = pt.find("pretokenizers");
  SK_CHECK(seq != pt.end() && seq->is_array(), where, ": pre_tokenizer.pretokenizers must be an array, got ",
           pt.dump().substr(0, 120));
  const json& s = *seq;
  if (s.size() == 1 && s[0].is_object() && s[0].value("type", json()) == "ByteLevel") {
    check_byte_level(s[0], where, "pre_tokenizer.pretokenizers[0]", false);
    return;
  }
  SK_CHECK(s.size() == 2, where, ": pre_tokenizer Sequence of ", s.size(),
           " pre-tokenizers is not supported (expected [Split with the GPT-2 pattern, ByteLevel]): ", show(s));
  SK_CHECK(is_gpt2_split(s[0]), where,
           ": pre_tokenizer.pretokenizers[0] is not a Split with the "
           "GPT-2 pattern, behavior Isolated: ",
           show(s[0]));
  SK_CHECK(s[1].is_object() && s[1].value("type", json()) == "ByteLevel", where,
           ": pre_tokenizer.pretokenizers[1] must be ByteLevel, got ", show(s[1]));
  check_byte_level(s[1], where, "pre_tokenizer.pretokenizers[1]", true);
}

// normalizer: null, NFC, or a Sequence (possibly nested) of NFC only. Returns "uses NFC".
bool read_normalizer(const json& n, const std::string& where, const std::string& ctx, int depth) {
  if (n.is_null()) return false;
  SK_CHECK(depth < 8, where, ": ", ctx, " is nested too deeply");
  SK_CHECK(n.is_object() && n.contains("type") && n["type"].is_string(), where, ": ", ctx,
           " must be null or an object with a type, got ", show(n));
  const std::string type = n["type"];
  if (type == "NFC") return true;
  SK_CHECK(type == "Sequence", where, ": ", ctx, ".type \"", type,
           "\" is not supported (null, NFC, or a Sequence of NFC)");
  auto it = n.find("normalizers");
  SK_CHECK(it != n.end() && it->is_array(), where, ": ", ctx, ".normalizers must be an array");
  bool nfc = false;
  for (size_t i = 0; i < it->size(); ++i)
    nfc |= read_normalizer((*it)[i], where, ctx + ".normalizers[" + std::to_string(i) + "]", depth + 1);
  return nfc;
}

}  // namespace

std::string read_file_bytes(const std::string& path, const char* what) {
  std::error_code ec;
  SK_CHECK(std::filesystem::is_regular_file(path, ec), what, " file '", path,
           "' does not exist or is not a regular file");
  std::ifstream f(path, std::ios::binary);
  SK_CHECK(f.good(), what, " file '", path, "' cannot be opened");
  std::ostringstream ss;
  ss << f.rdbuf();
  SK_CHECK(!f.bad(), what, " file '", path, "' could not be read");
  return ss.str();
}

BpeSpec parse_gpt2_files(std::string_view encoder_json, std::string_view vocab_bpe, const std::string& encoder_where,
                         const std::string& vocab_where) {
  BpeSpec spec;
  spec.source = encoder_where + " + " + vocab_where;
  read_vocab(parse_json(encoder_json, encoder_where), encoder_where, "encoder.json", spec);
  // vocab.bpe: lines; "#version..." lines and empty lines are skipped; CR before LF is dropped.
  size_t line_no = 0, pos = 0;
  while (pos < vocab_bpe.size()) {
    size_t eol = vocab_bpe.find('\n', pos);
    if (eol == std::string_view::npos) eol = vocab_bpe.size();
    std::string_view line = vocab_bpe.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    spec.merges.push_back(split_merge(line, vocab_where, "line " + std::to_string(line_no)));
  }
  for (const auto& [tok, id] : spec.vocab) {
    if (tok == "<|endoftext|>") {
      AddedTokenSpec a;
      a.id = id;
      a.content = tok;
      a.special = true;
      spec.added.push_back(a);
    }
  }
  return spec;
}

BpeSpec parse_hf_tokenizer_json(std::string_view text, const std::string& where) {
  const json root = parse_json(text, where);
  SK_CHECK(root.is_object(), where, ": a tokenizer.json must be a JSON object, got ", show(root));
  BpeSpec spec;
  spec.source = where;
  // model
  auto mit = root.find("model");
  SK_CHECK(mit != root.end() && mit->is_object(), where, ": model is missing or not an object");
  const json& model = *mit;
  auto tit = model.find("type");
  SK_CHECK(tit != model.end(), where, ": model.type is missing (expected \"BPE\")");
  SK_CHECK(tit->is_string() && *tit == "BPE", where, ": model.type ", show(*tit), " is not supported (only \"BPE\")");
  if (auto d = model.find("dropout"); d != model.end() && !d->is_null())
    SK_CHECK(d->is_number() && d->get<double>() == 0.0, where, ": model.dropout ", show(*d),
             " is not supported (null: deterministic encoding)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto k = model.find(key);
    if (k == model.end() || k->is_null()) continue;
    SK_CHECK(k->is_string() && k->get<std::string>().empty(), where, ": model.", key, " ", show(*k),
             " is not supported (byte-level BPE has none)");
  }
  SK_CHECK(!get_bool(model, "byte_fallback", false, where, "model"), where,
           ": model.byte_fallback true is not supported (byte-level BPE needs no fallback)");
  spec.ignore_merges = get_bool(model, "ignore_merges", false, where, "model");
  auto vit = model.find("vocab");
  SK_CHECK(vit != model.end(), where, ": model.vocab is missing");
  read_vocab(*vit, where, "model.vocab", spec);
  auto git = model.find("merges");
  SK_CHECK(git != model.end() && git->is_array(), where, ": model.merges is missing or not an array");
  spec.merges.reserve(git->size());
  for (size_t i = 0; i < git->size(); ++i) {
    const json& m = (*git)[i];
    const std::string ctx = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      spec.merges.push_back(split_merge(m.get_ref<const std::string&>(), where, ctx));
    } else {
      SK_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), where, ": ", ctx,
               " must be \"a b\" or [\"a\", \"b\"], got ", show(m));
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      SK_CHECK(!spec.merges.back().first.empty() && !spec.merges.back().second.empty(), where, ": ", ctx,
               " has an empty token");
    }
  }
  // normalizer, pre_tokenizer
  auto nit = root.find("normalizer");
  spec.nfc = nit != root.end() && read_normalizer(*nit, where, "normalizer", 0);
  check_pre_tokenizer(root, where);
  // added_tokens
  if (auto ait = root.find("added_tokens"); ait != root.end() && !ait->is_null()) {
    SK_CHECK(ait->is_array(), where, ": added_tokens must be an array, got ", show(*ait));
    for (size_t i = 0; i < ait->size(); ++i) {
      const json& t = (*ait)[i];
      const std::string ctx = "added_tokens[" + std::to_string(i) + "]";
      SK_CHECK(t.is_object(), where, ": ", ctx, " must be an object, got ", show(t));
      AddedTokenSpec a;
      SK_CHECK(t.contains("id"), where, ": ", ctx, ".id is missing");
      a.id = get_id(t["id"], where, ctx + ".id");
      SK_CHECK(t.contains("content") && t["content"].is_string(), where, ": ", ctx,
               ".content is missing or not a string");
      a.content = t["content"].get<std::string>();
      SK_CHECK(!a.content.empty(), where, ": ", ctx, ".content is empty");
      a.special = get_bool(t, "special", false, where, ctx.c_str());
      // tokenizers' default: normalized = !special when the field is absent.
      a.normalized = get_bool(t, "normalized", !a.special, where, ctx.c_str());
      a.lstrip = get_bool(t, "lstrip", false, where, ctx.c_str());
      a.rstrip = get_bool(t, "rstrip", false, where, ctx.c_str());
      SK_CHECK(!get_bool(t, "single_word", false, where, ctx.c_str()), where, ": ", ctx,
               ".single_word true is not supported (token '", show_str(a.content), "')");
      spec.added.push_back(std::move(a));
    }
  }
  spec.name = where;
  return spec;
}

BpeSpec read_gpt2_files(const std::string& dir) {
  const std::string enc = (std::filesystem::path(dir) / "encoder.json").string();
  const std::string voc = (std::filesystem::path(dir) / "vocab.bpe").string();
  const std::string enc_text = read_file_bytes(enc, "GPT-2 encoder.json");
  const std::string voc_text = read_file_bytes(voc, "GPT-2 vocab.bpe");
  BpeSpec spec = parse_gpt2_files(enc_text, voc_text, enc, voc);
  spec.name = dir + " (encoder.json + vocab.bpe)";
  return spec;
}

BpeSpec read_hf_tokenizer_json(const std::string& path) {
  return parse_hf_tokenizer_json(read_file_bytes(path, "tokenizer.json"), path);
}

}  // namespace sk::data
