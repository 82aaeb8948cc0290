// Byte-level BPE model: building the tables and the merge loop (see bpe_model.h).
// Tests: tests/data/test_tokenizer.cpp (BpeModel.*).
#include "data/bpe_model.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <unordered_map>

#include "data/pretokenize.h"
#include "util/check.h"

namespace sk::data {

namespace {

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s.push_back(char(cp));
  } else if (cp < 0x800) {
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(char(0xE0 | (cp >> 12)));
    s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
}

bool printable_byte(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

struct ByteMaps {
  std::array<std::string, 256> to_unicode;
  std::array<int, 256 + 68> from_cp;  // code point -> byte, -1 if none
  ByteMaps() {
    from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = printable_byte(b) ? uint32_t(b) : uint32_t(256 + n++);
      append_utf8(to_unicode[b], cp);
      from_cp[cp] = b;
    }
  }
};
const ByteMaps& byte_maps() {
  static const ByteMaps maps;
  return maps;
}

inline uint64_t load_le(const unsigned char* p, size_t n) {
  uint64_t v = 0;
  std::memcpy(&v, p, n);  // little-endian hosts (x86-64, aarch64); only used for hashing
  return v;
}

inline uint64_t mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return byte_maps().to_unicode; }

std::optional<std::string> unicode_to_bytes(std::string_view token) {
  const auto& from = byte_maps().from_cp;
  std::string out;
  out.reserve(token.size());
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  const unsigned char* end = p + token.size();
  while (p < end) {
    int len = 1;
    uint32_t cp = decode_utf8(p, end, &len);
    if (cp == kInvalidUtf8 || cp >= from.size() || from[cp] < 0) return std::nullopt;
    out.push_back(char(from[cp]));
    p += len;
  }
  return out;
}

uint64_t hash_bytes(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xC2B2AE3D27D4EB4Full);
  while (len >= 8) {
    h = (h ^ load_le(p, 8)) * 0x100000001B3ull * 0x9E3779B1ull;
    h ^= h >> 29;
    p += 8;
    len -= 8;
  }
  if (len > 0) h = (h ^ load_le(p, len)) * 0xFF51AFD7ED558CCDull;
  return mix(h);
}

BpeModel BpeModel::build(const std::vector<std::pair<std::string, uint32_t>>& vocab,
                         const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
                         const std::string& source) {
  BpeModel m;
  m.ignore_merges_ = ignore_merges;
  SK_CHECK(!vocab.empty(), source, ": the vocabulary is empty");
  uint32_t max_id = 0;
  for (const auto& [tok, id] : vocab) {
    SK_CHECK(id < (1u << 31), source, ": token '", tok, "' has id ", id, " (ids must be < 2^31)");
    max_id = std::max(max_id, id);
  }
  // Tables are dense in the id: refuse vocabularies with mostly unused ids.
  SK_CHECK(max_id < 2 * vocab.size() + 65536, source, ": largest id ", max_id,
           " is implausibly large for a vocabulary of ", vocab.size(), " tokens (ids too sparse)");
  const size_t limit = size_t(max_id) + 1;
  m.present_.assign(limit, 0);
  m.strings_.assign(limit, std::string());
  std::unordered_map<std::string, uint32_t> by_string;
  by_string.reserve(vocab.size() * 2);
  for (const auto& [tok, id] : vocab) {
    SK_CHECK(!m.present_[id], source, ": id ", id, " is used by both '", m.strings_[id], "' and '", tok, "'");
    SK_CHECK(by_string.emplace(tok, id).second, source, ": token '", tok, "' appears twice");
    m.present_[id] = 1;
    m.strings_[id] = tok;
  }
  // Bytes of every token.
  m.tok_off_.assign(limit + 1, 0);
  std::vector<uint8_t> decodable(limit, 0);
  for (size_t id = 0; id < limit; ++id) {
    m.tok_off_[id] = uint32_t(m.arena_.size());
    if (!m.present_[id]) continue;
    if (auto bytes = unicode_to_bytes(m.strings_[id])) {
      m.arena_ += *bytes;
      decodable[id] = 1;
    } else {
      m.arena_ += m.strings_[id];
    }
  }
  m.tok_off_[limit] = uint32_t(m.arena_.size());
  SK_CHECK(m.arena_.size() < 0xFFFFFFFFull, source, ": vocabulary too large");
  // The 256 single-byte tokens.
  const auto& b2u = byte_to_unicode();
  for (int b = 0; b < 256; ++b) {
    auto it = by_string.find(b2u[b]);
    SK_CHECK(it != by_string.end(), source, ": the vocabulary has no token for byte 0x", std::hex, b, std::dec, " (\"",
             b2u[b], "\"); a byte-level BPE needs all 256");
    m.byte_id_[b] = it->second;
  }
  // Merge table.
  size_t cap = 16;
  while (cap < merges.size() * 2 + 2) cap <<= 1;
  m.pair_keys_.assign(cap, kEmptyKey);
  m.pair_vals_.assign(cap, kNoMerge);
  m.pair_mask_ = cap - 1;
  m.pair_shift_ = 64 - __builtin_ctzll(cap);
  m.merge_list_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = by_string.find(a);
    SK_CHECK(ia != by_string.end(), source, ": merge ", rank + 1, " ('", a, " ", b, "'): token '", a,
             "' is not in the vocabulary");
    auto ib = by_string.find(b);
    SK_CHECK(ib != by_string.end(), source, ": merge ", rank + 1, " ('", a, " ", b, "'): token '", b,
             "' is not in the vocabulary");
    joined.assign(a).append(b);
    auto ic = by_string.find(joined);
    SK_CHECK(ic != by_string.end(), source, ": merge ", rank + 1, " ('", a, " ", b, "'): the merged token '", joined,
             "' is not in the vocabulary");
    SK_CHECK(rank < 0xFFFFFFFFull, source, ": too many merges");
    const uint64_t key = (uint64_t(ia->second) << 32) | ib->second;
    const uint64_t val = (uint64_t(rank) << 32) | ic->second;
    size_t i = size_t((key * 0x9E3779B97F4A7C15ull) >> m.pair_shift_);
    while (m.pair_keys_[i] != kEmptyKey && m.pair_keys_[i] != key) i = (i + 1) & m.pair_mask_;
    m.pair_keys_[i] = key;
    m.pair_vals_[i] = val;  // a later duplicate replaces the earlier rank
    m.merge_list_.emplace_back(ia->second, ib->second);
  }
  // Whole-token table: every decodable token whose BPE is itself (every decodable token with
  // ignore_merges, as `tokenizers` looks the pre-token up in the vocabulary first).
  cap = 16;
  while (cap < limit * 2 + 2) cap <<= 1;
  m.whole_.assign(cap, 0);
  m.whole_mask_ = cap - 1;
  std::vector<uint32_t> tmp;
  for (size_t id = 0; id < limit; ++id) {
    if (!decodable[id]) continue;
    std::string_view bytes = m.token_bytes(uint32_t(id));
    if (bytes.empty()) continue;
    bool take = ignore_merges || bytes.size() == 1;
    if (!take) {
      tmp.clear();
      m.merge_bytes(bytes, tmp);
      take = tmp.size() == 1 && tmp[0] == id;
    }
    if (take) m.insert_whole(bytes, uint32_t(id));
  }
  return m;
}

void BpeModel::insert_whole(std::string_view bytes, uint32_t id) {
  const uint64_t h = hash_bytes(bytes.data(), bytes.size());
  size_t i = size_t(h) & whole_mask_;
  while (whole_[i] != 0) {
    const uint32_t other = uint32_t(whole_[i] & 0xFFFFFFFFu) - 1;
    if (token_bytes(other) == bytes) return;  // same bytes (cannot happen for distinct strings)
    i = (i + 1) & whole_mask_;
  }
  whole_[i] = ((h >> 32) << 32) | (uint64_t(id) + 1);
  ++whole_count_;
}

bool BpeModel::lookup_whole(std::string_view piece, uint32_t* id) const {
  const uint64_t h = hash_bytes(piece.data(), piece.size());
  const uint64_t tag = h >> 32;
  size_t i = size_t(h) & whole_mask_;
  while (true) {
    const uint64_t slot = whole_[i];
    if (slot == 0) return false;
    if ((slot >> 32) == tag) {
      const uint32_t cand = uint32_t(slot & 0xFFFFFFFFu) - 1;
      const uint32_t off = tok_off_[cand], len = tok_off_[cand + 1] - off;
      if (len == piece.size() && std::memcmp(arena_.data() + off, piece.data(), len) == 0) {
        *id = cand;
        return true;
      }
    }
    i = (i + 1) & whole_mask_;
  }
}

std::optional<uint32_t> BpeModel::id_of_string(std::string_view token_string) const {
  // Load-time use only: a linear scan is fine.
  for (size_t id = 0; id < strings_.size(); ++id)
    if (present_[id] && strings_[id] == token_string) return uint32_t(id);
  return std::nullopt;
}

void BpeModel::merge_bytes(std::string_view piece, std::vector<uint32_t>& out, size_t heap_threshold) const {
  if (piece.empty()) return;
  if (piece.size() > heap_threshold)
    merge_heap(piece, out);
  else
    merge_small(piece, out);
}

// Arrays + linear scan for the lowest (rank, position). sym[0..n), pr[i] = merge of (sym[i],
// sym[i+1]) packed as rank << 32 | new id (kNoMerge when none), so the minimum of pr is the lowest
// rank, and the first minimum the leftmost.
void BpeModel::merge_small(std::string_view piece, std::vector<uint32_t>& out) const {
  constexpr size_t kStack = 128;
  uint32_t sym_stack[kStack];
  uint64_t pr_stack[kStack];
  std::vector<uint32_t> sym_heap;
  std::vector<uint64_t> pr_heap;
  size_t n = piece.size();
  uint32_t* sym = sym_stack;
  uint64_t* pr = pr_stack;
  if (n > kStack) {
    sym_heap.resize(n);
    pr_heap.resize(n);
    sym = sym_heap.data();
    pr = pr_heap.data();
  }
  for (size_t i = 0; i < n; ++i) sym[i] = byte_id_[static_cast<unsigned char>(piece[i])];
  for (size_t i = 0; i + 1 < n; ++i) pr[i] = pair_merge(sym[i], sym[i + 1]);
  while (n > 1) {
    uint64_t best = kNoMerge;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (pr[i] < best) {
        best = pr[i];
        bi = i;
      }
    }
    if (best == kNoMerge) break;
    sym[bi] = uint32_t(best & 0xFFFFFFFFu);
    // Remove symbol bi+1 and pair bi (pairs bi+1.. shift down by one).
    for (size_t k = bi + 1; k + 1 < n; ++k) sym[k] = sym[k + 1];
    for (size_t k = bi; k + 2 < n; ++k) pr[k] = pr[k + 1];
    --n;
    if (bi > 0) pr[bi - 1] = pair_merge(sym[bi - 1], sym[bi]);
    if (bi + 1 < n) pr[bi] = pair_merge(sym[bi], sym[bi + 1]);
  }
  out.insert(out.end(), sym, sym + n);
}

// Binary heap of candidate merges over a doubly linked list of symbols (as `tokenizers`'
// word.rs): entries are (rank, position of the left symbol); a popped entry is stale when its
// left symbol is gone or the pair there no longer has that rank.
void BpeModel::merge_heap(std::string_view piece, std::vector<uint32_t>& out) const {
  const size_t n = piece.size();
  std::vector<uint32_t> sym(n);
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    sym[i] = byte_id_[static_cast<unsigned char>(piece[i])];
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  struct Cand {
    uint32_t rank, pos;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    const uint64_t m = pair_merge(sym[left], sym[next[left]]);
    if (m != kNoMerge) heap.push({uint32_t(m >> 32), uint32_t(left)});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t l = int32_t(c.pos);
    if (!alive[l] || next[l] < 0) continue;
    const int32_t r = next[l];
    const uint64_t m = pair_merge(sym[l], sym[r]);
    if (m == kNoMerge || uint32_t(m >> 32) != c.rank) continue;
    sym[l] = uint32_t(m & 0xFFFFFFFFu);
    alive[r] = 0;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    push(prev[l]);
    push(l);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

}  // namespace sk::data
