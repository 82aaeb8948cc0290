// Tokenizer (tokenizer.h): loading, added/special tokens, the encode pipeline, decode, hash,
// and the throughput bench.
//
// encode(text, allow_special), as Hugging Face `tokenizers` does it (AddedVocabulary then
// ByteLevel + BPE):
//   1. split the raw text on the added tokens whose "normalized" is false (leftmost-longest
//      match; special tokens only with allow_special), honouring lstrip/rstrip;
//   2. NFC each remaining piece when the tokenizer.json asks for it;
//   3. split those on the added tokens whose "normalized" is true (their content NFC'd);
//   4. GPT-2 pre-tokenisation of the remaining pieces (pretokenize.h) and BPE of each pre-token
//      (bpe_model.h).
// Tests: tests/data/test_tokenizer*.cpp.
#include "data/tokenizer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <unordered_map>

#include "data/bpe_files.h"
#include "data/bpe_model.h"
#include "data/bpe_sha256.h"
#include "data/pretokenize.h"
#include "util/check.h"

namespace sk::data {

namespace {

// Byte trie of added-token contents, for the leftmost-longest match.
struct Trie {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> kids;
    int32_t token = -1;  // index into Impl::added_
  };
  std::vector<Node> nodes = std::vector<Node>(1);
  std::array<bool, 256> first{};
  bool empty = true;

  void insert(std::string_view s, int32_t token) {
    int32_t cur = 0;
    for (unsigned char c : s) {
      int32_t nxt = -1;
      for (const auto& [b, k] : nodes[cur].kids)
        if (b == c) nxt = k;
      if (nxt < 0) {
        nxt = int32_t(nodes.size());
        nodes[cur].kids.emplace_back(c, nxt);
        nodes.emplace_back();
      }
      cur = nxt;
    }
    if (nodes[cur].token < 0) nodes[cur].token = token;  // first one wins on equal content
    first[static_cast<unsigned char>(s[0])] = true;
    empty = false;
  }

  // Length of the longest token starting at text[pos] (0 if none); sets *token.
  size_t longest(std::string_view text, size_t pos, int32_t* token) const {
    int32_t cur = 0;
    size_t best = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      int32_t nxt = -1;
      for (const auto& [b, k] : nodes[cur].kids)
        if (b == c) {
          nxt = k;
          break;
        }
      if (nxt < 0) break;
      cur = nxt;
      if (nodes[cur].token >= 0) {
        best = i + 1 - pos;
        *token = nodes[cur].token;
      }
    }
    return best;
  }
};

struct AddedToken {
  uint32_t id;
  std::string content;  // as in the file
  std::string match;    // what is matched: content, or NFC(content) when normalized + NFC
  bool special, normalized, lstrip, rstrip;
};

// Start of the whitespace run that ends text (text.size() when it does not end in whitespace).
size_t trailing_space_start(std::string_view text) {
  const auto* base = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = base + text.size();
  size_t run = text.size();
  for (const unsigned char* p = base; p < end;) {
    int len = 1;
    const bool space = char_class(decode_utf8(p, end, &len)) == CharClass::Space;
    if (!space)
      run = text.size();
    else if (run == text.size())
      run = size_t(p - base);
    p += len;
  }
  return run;
}

// Length of the whitespace run that starts text.
size_t leading_space_len(std::string_view text) {
  const auto* base = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char* end = base + text.size();
  const unsigned char* p = base;
  while (p < end) {
    int len = 1;
    uint32_t cp = decode_utf8(p, end, &len);
    if (char_class(cp) != CharClass::Space) break;
    p += len;
  }
  return size_t(p - base);
}

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xFF));
}

}  // namespace

struct Tokenizer::Impl {
  BpeModel model;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, uint32_t> added_by_content;
  // [allow_special]: tries over raw text (normalized=false) and over normalized text.
  Trie raw_trie[2], norm_trie[2];
  bool nfc = false;
  std::string name, hash;
  size_t vocab_size = 0;
  std::string dec_arena;
  std::vector<uint32_t> dec_off;  // id -> offset (size vocab_size + 1)
  std::vector<uint8_t> dec_present;

  void fill(const BpeSpec& spec);

  void encode_ordinary(std::string_view s, std::vector<uint32_t>& out) const {
    if (s.empty()) return;
    std::vector<uint32_t> ends;
    ends.reserve(s.size() / 4 + 4);
    gpt2_split(s, ends);
    uint32_t start = 0;
    for (uint32_t e : ends) {
      model.encode_piece(s.substr(start, e - start), out);
      start = e;
    }
  }

  // Splits text on the tokens of trie: gap(piece) for the text between matches, token(index into
  // added) for each match.
  template <typename Gap, typename Tok>
  void split_added(std::string_view text, const Trie& trie, const Gap& gap, const Tok& token) const {
    size_t start = 0, pos = 0;
    const size_t n = text.size();
    while (pos < n) {
      if (!trie.first[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      int32_t t = -1;
      const size_t len = trie.longest(text, pos, &t);
      if (len == 0) {
        ++pos;
        continue;
      }
      const AddedToken& tok = added[size_t(t)];
      size_t ms = pos, me = pos + len;
      if (tok.lstrip) ms = start + trailing_space_start(text.substr(start, ms - start));
      if (tok.rstrip) me += leading_space_len(text.substr(me));
      if (ms > start) gap(text.substr(start, ms - start));
      token(tok);
      start = pos = me;
    }
    if (start < n) gap(text.substr(start));
  }

  // The pipeline up to pre-tokenisation: ordinary(piece) for normalized text that is not an added
  // token, token(added token) for each added token matched.
  template <typename Ordinary, typename Tok>
  void run(std::string_view text, bool allow_special, const Ordinary& ordinary, const Tok& token) const {
    const Trie& raw = raw_trie[allow_special ? 1 : 0];
    const Trie& norm = norm_trie[allow_special ? 1 : 0];
    auto normalized_piece = [&](std::string_view s) {
      if (norm.empty)
        ordinary(s);
      else
        split_added(s, norm, ordinary, token);
    };
    auto raw_piece = [&](std::string_view s) {
      if (nfc && !nfc_trivially_stable(s)) {
        const std::string n = nfc_normalize(s);
        normalized_piece(n);
      } else {
        normalized_piece(s);
      }
    };
    if (raw.empty)
      raw_piece(text);
    else
      split_added(text, raw, raw_piece, token);
  }

  void encode(std::string_view text, std::vector<uint32_t>& out, bool allow_special) const {
    run(
        text, allow_special, [&](std::string_view s) { encode_ordinary(s, out); },
        [&](const AddedToken& t) { out.push_back(t.id); });
  }

  std::string normalize(std::string_view text, bool allow_special) const {
    std::string out;
    out.reserve(text.size());
    run(
        text, allow_special, [&](std::string_view s) { out.append(s); },
        [&](const AddedToken& t) { out.append(t.match); });
    return out;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// Builds everything from a spec (shared by both loaders).
void Tokenizer::Impl::fill(const BpeSpec& spec) {
  Impl& im = *this;
  im.model = BpeModel::build(spec.vocab, spec.merges, spec.ignore_merges, spec.source);
  im.nfc = spec.nfc;
  im.name = spec.name.empty() ? spec.source : spec.name;
  size_t vocab_size = im.model.id_limit();
  // Added tokens: ids must agree with the vocabulary (tokenizers gives a token that is in the
  // vocabulary that id) and must not collide.
  std::vector<const AddedTokenSpec*> order;
  for (const auto& a : spec.added) order.push_back(&a);
  std::unordered_map<uint32_t, std::string> added_ids;
  for (const AddedTokenSpec* a : order) {
    SK_CHECK(!a->content.empty(), spec.source, ": added token with id ", a->id, " is empty");
    const auto in_vocab = im.model.id_of_string(a->content);
    if (in_vocab) {
      SK_CHECK(*in_vocab == a->id, spec.source, ": added token '", a->content, "' has id ", a->id,
               " but the vocabulary gives it id ", *in_vocab);
    } else {
      SK_CHECK(!im.model.has_id(a->id), spec.source, ": added token '", a->content, "' has id ", a->id,
               ", which the vocabulary uses for '", im.model.token_strings()[a->id], "'");
    }
    SK_CHECK(a->id < im.model.id_limit() + (1u << 20), spec.source, ": added token '", a->content, "' has id ", a->id,
             ", far past the vocabulary (largest id ", im.model.id_limit() - 1, ")");
    auto [it, fresh] = added_ids.emplace(a->id, a->content);
    SK_CHECK(fresh, spec.source, ": added tokens '", it->second, "' and '", a->content, "' share id ", a->id);
    SK_CHECK(im.added_by_content.emplace(a->content, a->id).second, spec.source, ": added token '", a->content,
             "' appears twice");
    AddedToken t;
    t.id = a->id;
    t.content = a->content;
    t.special = a->special;
    t.normalized = a->normalized;
    t.lstrip = a->lstrip;
    t.rstrip = a->rstrip;
    t.match = (t.normalized && spec.nfc) ? nfc_normalize(t.content) : t.content;
    im.added.push_back(std::move(t));
    vocab_size = std::max(vocab_size, size_t(a->id) + 1);
  }
  for (size_t i = 0; i < im.added.size(); ++i) {
    const AddedToken& t = im.added[i];
    if (t.match.empty()) continue;
    for (int allow = 0; allow < 2; ++allow) {
      if (t.special && !allow) continue;
      (t.normalized ? im.norm_trie : im.raw_trie)[allow].insert(t.match, int32_t(i));
    }
  }
  im.vocab_size = vocab_size;
  // Decode table: vocabulary bytes; added tokens decode to the text they match (their content, NFC'd
  // for a normalized token under NFC), so that decode(encode(x)) == normalize(x).
  im.dec_off.assign(vocab_size + 1, 0);
  im.dec_present.assign(vocab_size, 0);
  std::vector<const AddedToken*> added_at(vocab_size, nullptr);
  for (const auto& t : im.added) added_at[t.id] = &t;
  for (size_t id = 0; id < vocab_size; ++id) {
    im.dec_off[id] = uint32_t(im.dec_arena.size());
    if (added_at[id]) {
      im.dec_arena += added_at[id]->match;
      im.dec_present[id] = 1;
    } else if (im.model.has_id(uint32_t(id))) {
      im.dec_arena += im.model.token_bytes(uint32_t(id));
      im.dec_present[id] = 1;
    }
  }
  im.dec_off[vocab_size] = uint32_t(im.dec_arena.size());
  // Hash: a canonical binary form of what determines encoding and decoding.
  std::string canon = "sparsek-tokenizer-v1\n";
  canon.push_back(char(im.nfc ? 1 : 0));
  canon.push_back(char(spec.ignore_merges ? 1 : 0));
  put_u32(canon, uint32_t(im.model.id_limit()));
  for (size_t id = 0; id < im.model.id_limit(); ++id) {
    if (!im.model.has_id(uint32_t(id))) continue;
    const std::string& s = im.model.token_strings()[id];
    put_u32(canon, uint32_t(id));
    put_u32(canon, uint32_t(s.size()));
    canon += s;
  }
  put_u32(canon, uint32_t(im.model.num_merges()));
  for (const auto& [a, b] : im.model.merge_list()) {
    put_u32(canon, a);
    put_u32(canon, b);
  }
  std::vector<const AddedToken*> by_id;
  for (const auto& t : im.added) by_id.push_back(&t);
  std::sort(by_id.begin(), by_id.end(), [](auto* x, auto* y) { return x->id < y->id; });
  put_u32(canon, uint32_t(by_id.size()));
  for (const AddedToken* t : by_id) {
    put_u32(canon, t->id);
    canon.push_back(char((t->special ? 1 : 0) | (t->normalized ? 2 : 0) | (t->lstrip ? 4 : 0) | (t->rstrip ? 8 : 0)));
    put_u32(canon, uint32_t(t->content.size()));
    canon += t->content;
  }
  im.hash = sha256_hex(canon);
}

Tokenizer Tokenizer::load_gpt2_files(const std::string& dir) {
  auto im = std::make_unique<Impl>();
  im->fill(read_gpt2_files(dir));
  return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::load_hf_json(const std::string& path) {
  auto im = std::make_unique<Impl>();
  im->fill(read_hf_tokenizer_json(path));
  return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::from_gpt2_texts(std::string_view encoder_json, std::string_view vocab_bpe,
                                     const std::string& name) {
  BpeSpec spec = parse_gpt2_files(encoder_json, vocab_bpe, name + " encoder.json", name + " vocab.bpe");
  spec.name = name;
  auto im = std::make_unique<Impl>();
  im->fill(spec);
  return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::from_hf_json_text(std::string_view json_text, const std::string& name) {
  auto im = std::make_unique<Impl>();
  im->fill(parse_hf_tokenizer_json(json_text, name));
  return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "tokenizer.json", ec))
      return load_hf_json((fs::path(path) / "tokenizer.json").string());
    if (fs::exists(fs::path(path) / "encoder.json", ec) && fs::exists(fs::path(path) / "vocab.bpe", ec))
      return load_gpt2_files(path);
    SK_FAIL("tokenizer directory '", path,
            "' has neither tokenizer.json nor encoder.json + vocab.bpe (scripts/get_gpt2_tokenizer.sh "
            "fetches the GPT-2 files)");
  }
  SK_CHECK(fs::exists(path, ec), "tokenizer path '", path, "' does not exist");
  SK_CHECK(fs::path(path).extension() == ".json", "tokenizer path '", path,
           "' is neither a directory nor a .json file (tokenizer.json)");
  return load_hf_json(path);
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode(text, out, allow_special);
  return out;
}

size_t Tokenizer::encode_into(std::string_view text, std::vector<uint32_t>& out, bool allow_special) const {
  const size_t before = out.size();
  impl_->encode(text, out, allow_special);
  return out.size() - before;
}

std::string_view Tokenizer::token_bytes(uint32_t id) const {
  const Impl& im = *impl_;
  SK_CHECK(id < im.vocab_size && im.dec_present[id], "token_bytes: id ", id, " is not in the vocabulary of ", im.name,
           " (vocab_size ", im.vocab_size, ")");
  return std::string_view(im.dec_arena).substr(im.dec_off[id], im.dec_off[id + 1] - im.dec_off[id]);
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  const Impl& im = *impl_;
  std::string out;
  out.reserve(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t id = ids[i];
    SK_CHECK(id < im.vocab_size && im.dec_present[id], "decode: id ", id, " at position ", i,
             " is not in the vocabulary of ", im.name, " (vocab_size ", im.vocab_size, ")");
    out.append(im.dec_arena, im.dec_off[id], im.dec_off[id + 1] - im.dec_off[id]);
  }
  return out;
}

std::string Tokenizer::normalize(std::string_view text, bool allow_special) const {
  return impl_->normalize(text, allow_special);
}

size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

uint32_t Tokenizer::eot_id() const {
  auto id = token_id("<|endoftext|>");
  SK_CHECK(id.has_value(), "tokenizer ", impl_->name, " has no \"<|endoftext|>\" token");
  return *id;
}

std::string Tokenizer::hash() const { return impl_->hash; }
std::string Tokenizer::name() const { return impl_->name; }

std::optional<uint32_t> Tokenizer::token_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it == impl_->added_by_content.end()) return std::nullopt;
  return it->second;
}

double bench_tokenizer_mbps(const Tokenizer& tok, const std::string& text, bool allow_special) {
  SK_CHECK(!text.empty(), "bench_tokenizer_mbps: the text is empty");
  using clock = std::chrono::steady_clock;
  std::vector<uint32_t> ids;
  ids.reserve(text.size() / 2);
  double best = 0, total = 0;
  for (int rep = 0; rep < 1000 && (rep < 3 || total < 1.0); ++rep) {
    ids.clear();
    const auto t0 = clock::now();
    tok.encode_into(text, ids, allow_special);
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    total += s;
    if (s > 0) best = std::max(best, double(text.size()) / s / 1e6);
  }
  return best;
}

}  // namespace sk::data
