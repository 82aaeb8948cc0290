// Long-range probes (probes.h).
#include "compare/probes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "autograd/node.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "model/kv_cache.h"
#include "tensor/random.h"
#include "train/trainer.h"
#include "util/check.h"

namespace sk::compare {

namespace {

std::vector<int32_t> enc(const data::Tokenizer& tok, const std::string& text) {
  const std::vector<uint32_t> ids = tok.encode(text);
  return std::vector<int32_t>(ids.begin(), ids.end());
}

void append(std::vector<int32_t>& a, const std::vector<int32_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

// A seed per (probe, L, distance, trial) so that adding distances or trials does not change others.
uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  return x;
}

// `count` consecutive filler tokens at a random offset.
std::vector<int32_t> filler_slice(const std::vector<int32_t>& filler, int64_t count, Rng& rng) {
  SK_CHECK(int64_t(filler.size()) >= count, "probes: the filler text has ", filler.size(), " tokens, ", count,
           " are needed (a longer validation split)");
  const int64_t off = int64_t(rng.below(uint64_t(int64_t(filler.size()) - count + 1)));
  return std::vector<int32_t>(filler.begin() + off, filler.begin() + off + count);
}

}  // namespace

ProbeTemplates text_templates(const data::Tokenizer& tok) {
  ProbeTemplates t;
  t.source = "text (" + tok.name() + ")";
  t.needle_prefix = enc(tok, " The pass key is");
  t.needle_suffix = enc(tok, ". Remember it.");
  t.question = enc(tok, " What is the pass key? The pass key is");
  // " 12345" is one pre-token (the GPT-2 pattern ' ?\p{N}+'), so its tokens are the same in the
  // needle and in the answer.
  const data::Tokenizer* tp = &tok;
  t.key_tokens = [tp](int64_t key) { return enc(*tp, " " + std::to_string(key)); };
  // Keys: common words that are one token with a leading space; values: " 10" .. " 99" likewise.
  static const char* words[] = {
      "apple", "house", "river", "table", "green", "music", "paper", "stone", "light", "water", "horse", "chair",
      "bread", "cloud", "plant", "glass", "train", "money", "night", "sound", "field", "heart", "story", "power",
      "metal", "floor", "phone", "dream", "earth", "smile", "ocean", "tiger", "queen", "king", "door", "tree",
      "bird", "fish", "book", "ship", "road", "fire", "wind", "snow", "rain", "star", "moon", "sun", "car", "dog",
      "cat", "box", "cup", "hat", "map", "pen", "key", "bag", "bed", "egg", "ice", "oil", "salt", "milk", "wood"};
  std::set<int32_t> seen;
  for (const char* w : words) {
    const auto ids = enc(tok, std::string(" ") + w);
    if (ids.size() == 1 && seen.insert(ids[0]).second) t.keys.push_back(ids[0]);
  }
  for (int v = 10; v < 100; ++v) {
    const auto ids = enc(tok, " " + std::to_string(v));
    if (ids.size() == 1 && seen.insert(ids[0]).second) t.values.push_back(ids[0]);
  }
  const auto sep = enc(tok, ",");
  SK_CHECK(sep.size() == 1 && t.keys.size() >= 16 && t.values.size() >= 16, "probes: the tokenizer ", tok.name(),
           " does not give single-token keys/values/separator (", t.keys.size(), " keys, ", t.values.size(),
           " values)");
  t.sep = sep[0];
  return t;
}

ProbeTemplates synthetic_templates(int64_t V) {
  SK_CHECK(V >= 24, "probes: synthetic templates need a vocabulary of at least 24 ids, got ", V);
  ProbeTemplates t;
  t.source = "synthetic ids (no tokenizer)";
  const int32_t top = int32_t(V);
  // Digits: the last 10 ids; markers just below them.
  const int32_t digit0 = top - 10;
  t.needle_prefix = {top - 11, top - 12};
  t.needle_suffix = {top - 13};
  t.question = {top - 14, top - 11, top - 12};
  t.key_tokens = [digit0](int64_t key) {
    std::vector<int32_t> out;
    for (char c : std::to_string(key)) out.push_back(digit0 + (c - '0'));
    return out;
  };
  // Associative recall: keys from the lower half, values from [V/2, V - 15), separator V - 15.
  for (int32_t i = 0; i < top / 2; ++i) t.keys.push_back(i);
  for (int32_t i = top / 2; i < top - 15; ++i) t.values.push_back(i);
  t.sep = top - 15;
  return t;
}

bool passkey_fits(const ProbeTemplates& t, int64_t L, int64_t d) {
  const int64_t na = int64_t(t.key_tokens(10000).size());
  const int64_t fb = d - na - int64_t(t.needle_suffix.size()) - int64_t(t.question.size());
  const int64_t fa = L - int64_t(t.needle_prefix.size()) - na - int64_t(t.needle_suffix.size()) - fb -
                     int64_t(t.question.size()) - na;
  return fb >= 0 && fa >= 0;
}

std::vector<ProbeSequence> passkey_sequences(const ProbeTemplates& t, const std::vector<int32_t>& filler, int64_t L,
                                             int64_t d, int64_t trials, uint64_t seed) {
  SK_CHECK(passkey_fits(t, L, d), "passkey: distance ", d, " does not fit in context ", L);
  std::vector<ProbeSequence> out;
  for (int64_t i = 0; i < trials; ++i) {
    Rng rng(mix(mix(mix(seed, 1), uint64_t(L)), mix(uint64_t(d), uint64_t(i))));
    const int64_t key = 10000 + int64_t(rng.below(90000));
    const std::vector<int32_t> ans = t.key_tokens(key);
    const int64_t na = int64_t(ans.size());
    // Key tokens may differ in count between keys (text tokenizers): the fillers absorb it.
    const int64_t fb = d - na - int64_t(t.needle_suffix.size()) - int64_t(t.question.size());
    const int64_t fa = L - int64_t(t.needle_prefix.size()) - na - int64_t(t.needle_suffix.size()) - fb -
                       int64_t(t.question.size()) - na;
    SK_CHECK(fb >= 0 && fa >= 0, "passkey: distance ", d, " does not fit in context ", L, " with key ", key);
    const std::vector<int32_t> text = filler_slice(filler, fa + fb, rng);
    ProbeSequence s;
    s.tokens.assign(text.begin(), text.begin() + fa);
    append(s.tokens, t.needle_prefix);
    const int64_t key_at = int64_t(s.tokens.size());
    append(s.tokens, ans);
    append(s.tokens, t.needle_suffix);
    s.tokens.insert(s.tokens.end(), text.begin() + fa, text.end());
    append(s.tokens, t.question);
    const int64_t answer_at = int64_t(s.tokens.size());
    append(s.tokens, ans);
    SK_CHECK(int64_t(s.tokens.size()) == L, "passkey: built ", s.tokens.size(), " tokens, expected ", L);
    s.n_answer = na;
    s.distance = answer_at - key_at;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<ProbeSequence> assoc_sequences(const ProbeTemplates& t, const std::vector<int32_t>& filler, int64_t L,
                                           int64_t n, int64_t trials, uint64_t seed) {
  SK_CHECK(int64_t(t.keys.size()) >= n, "assoc: ", n, " pairs need ", n, " distinct keys; the templates have ",
           t.keys.size(), " (", t.source, ")");
  SK_CHECK(3 * n + 3 <= L, "assoc: ", n, " pairs (3 tokens each) and the query do not fit in context ", L);
  const int64_t g = (L - 3 - 3 * n) / n;
  const int64_t pad = L - 3 - n * (g + 3);
  std::vector<ProbeSequence> out;
  for (int64_t i = 0; i < trials; ++i) {
    Rng rng(mix(mix(mix(seed, 2), uint64_t(L)), mix(uint64_t(n), uint64_t(i))));
    std::vector<int32_t> keys = t.keys;
    for (int64_t j = 0; j < n; ++j) std::swap(keys[j], keys[j + int64_t(rng.below(uint64_t(int64_t(keys.size()) - j)))]);
    std::vector<int32_t> values(n);
    for (auto& v : values) v = t.values[rng.below(t.values.size())];
    const int64_t q = int64_t(rng.below(uint64_t(n)));
    const std::vector<int32_t> text = filler_slice(filler, pad + n * g, rng);
    ProbeSequence s;
    s.tokens.assign(text.begin(), text.begin() + pad);
    int64_t value_at = 0;
    for (int64_t j = 0; j < n; ++j) {
      s.tokens.insert(s.tokens.end(), text.begin() + pad + j * g, text.begin() + pad + (j + 1) * g);
      s.tokens.push_back(t.sep);
      s.tokens.push_back(keys[j]);
      if (j == q) value_at = int64_t(s.tokens.size());
      s.tokens.push_back(values[j]);
    }
    s.tokens.push_back(t.sep);
    s.tokens.push_back(keys[q]);
    s.distance = int64_t(s.tokens.size()) - value_at;
    s.tokens.push_back(values[q]);
    SK_CHECK(int64_t(s.tokens.size()) == L, "assoc: built ", s.tokens.size(), " tokens, expected ", L);
    s.n_answer = 1;
    out.push_back(std::move(s));
  }
  return out;
}

Scorer model_scorer(const model::Gpt& gpt, int64_t batch, bool strictly_causal) {
  const model::Gpt* g = &gpt;
  return [g, batch, strictly_causal](const std::vector<ProbeSequence>& seqs) {
    autograd::NoGradGuard no_grad;
    g->set_step(-1);
    const int64_t V = g->config().vocab_size;
    const Device dev = g->device();
    std::vector<Prediction> out;
    for (size_t s0 = 0; s0 < seqs.size(); s0 += size_t(batch)) {
      const size_t s1 = std::min(seqs.size(), s0 + size_t(batch));
      const int64_t B = int64_t(s1 - s0);
      const int64_t L = int64_t(seqs[s0].tokens.size()), na = seqs[s0].n_answer;
      for (size_t s = s0; s < s1; ++s)
        SK_CHECK(int64_t(seqs[s].tokens.size()) == L && seqs[s].n_answer == na, "probes: a scorer batch needs equal lengths");
      // Inputs: every token but the last; the answers are predicted at the last na input positions.
      std::vector<int64_t> ids;
      for (size_t s = s0; s < s1; ++s) ids.insert(ids.end(), seqs[s].tokens.begin(), seqs[s].tokens.end() - 1);
      const Tensor idx = Tensor::from_ints(ids, {B, L - 1}, DType::I32);
      Tensor logits;  // (B, na, Vp) at the answer positions
      if (!strictly_causal) {
        logits = g->forward(idx.to(dev)).slice(1, L - 1 - na, L - 1);
      } else {
        model::KvCache cache = g->new_cache(B, L - 1);
        const int64_t prompt = L - na;  // through the question: its last logits predict the first answer token
        const Tensor idx_dev = idx.to(dev);  // once: no host copy (stream sync) per answer token
        std::vector<Tensor> parts;
        parts.push_back(g->forward_step(idx_dev.slice(1, 0, prompt).contiguous(), cache).slice(1, prompt - 1, prompt));
        for (int64_t p = prompt; p < L - 1; ++p)
          parts.push_back(g->forward_step(idx_dev.slice(1, p, p + 1).contiguous(), cache));
        std::vector<Tensor> host;
        for (auto& t : parts) host.push_back(t.to(DType::F32).cpu().contiguous());
        const int64_t Vp = host[0].size(2);
        logits = Tensor::empty({B, na, Vp});
        for (int64_t j = 0; j < na; ++j)
          for (int64_t b = 0; b < B; ++b)
            std::copy_n(host[j].data<float>() + b * Vp, Vp, logits.data<float>() + (b * na + j) * Vp);
      }
      const Tensor lh = logits.to(DType::F32).cpu().contiguous();
      const int64_t Vp = lh.size(2);
      for (int64_t b = 0; b < B; ++b) {
        const ProbeSequence& sq = seqs[s0 + size_t(b)];
        Prediction pr;
        for (int64_t j = 0; j < na; ++j) {
          const float* row = lh.data<float>() + (b * na + j) * Vp;
          int64_t best = 0;
          double mx = -std::numeric_limits<double>::infinity();
          for (int64_t v = 0; v < V; ++v)
            if (row[v] > mx) mx = row[v], best = v;
          double sum = 0;
          for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
          const int32_t target = sq.tokens[size_t(L - na + j)];
          pr.argmax.push_back(int32_t(best));
          pr.logprob.push_back(double(row[target]) - mx - std::log(sum));
        }
        out.push_back(std::move(pr));
      }
    }
    return out;
  };
}

Scorer induction_scorer() {
  return [](const std::vector<ProbeSequence>& seqs) {
    std::vector<Prediction> out;
    for (const ProbeSequence& s : seqs) {
      Prediction pr;
      const int64_t L = int64_t(s.tokens.size());
      for (int64_t p = L - 1 - s.n_answer; p < L - 1; ++p) {
        // The latest j < p whose preceding tokens match those before p + 1 longest (up to 8).
        int64_t best_j = -1, best_len = 0;
        for (int64_t j = p - 1; j >= 0; --j) {
          int64_t len = 0;
          while (len < 8 && j - len >= 0 && s.tokens[size_t(j - len)] == s.tokens[size_t(p - len)]) ++len;
          if (len > best_len) best_len = len, best_j = j;
          if (len == 8) break;
        }
        const int32_t guess = best_j >= 0 ? s.tokens[size_t(best_j + 1)] : 0;
        pr.argmax.push_back(guess);
        pr.logprob.push_back(guess == s.tokens[size_t(p + 1)] ? 0.0 : -30.0);
      }
      out.push_back(std::move(pr));
    }
    return out;
  };
}

Scorer random_scorer(std::vector<int32_t> pool, uint64_t seed) {
  auto rng = std::make_shared<Rng>(seed);
  return [pool, rng](const std::vector<ProbeSequence>& seqs) {
    std::vector<Prediction> out;
    for (const ProbeSequence& s : seqs) {
      Prediction pr;
      for (int64_t j = 0; j < s.n_answer; ++j) {
        pr.argmax.push_back(pool[rng->below(pool.size())]);
        pr.logprob.push_back(-std::log(double(pool.size())));
      }
      out.push_back(std::move(pr));
    }
    return out;
  };
}

nlohmann::json run_probes(const Scorer& scorer, const ProbeTemplates& t, const std::vector<int32_t>& filler, int64_t L,
                          const ProbeOptions& o) {
  using nlohmann::json;
  json r = {{"L", L}, {"templates", t.source}, {"passkey", json::array()}};
  for (int64_t d : o.passkey_distances) {
    if (!passkey_fits(t, L, d)) {
      r["passkey"].push_back({{"distance", d}, {"skipped", "does not fit in context " + std::to_string(L)}});
      continue;
    }
    const auto seqs = passkey_sequences(t, filler, L, d, o.passkey_trials, o.seed);
    // Scored in groups of equal answer length (a batch needs equal shapes).
    int64_t correct = 0;
    double lp = 0;
    std::vector<size_t> order(seqs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].n_answer < seqs[b].n_answer; });
    for (size_t i = 0; i < order.size();) {
      std::vector<ProbeSequence> group;
      const int64_t na = seqs[order[i]].n_answer;
      while (i < order.size() && seqs[order[i]].n_answer == na) group.push_back(seqs[order[i++]]);
      const auto preds = scorer(group);
      for (size_t k = 0; k < group.size(); ++k) {
        bool ok = true;
        for (int64_t j = 0; j < na; ++j) {
          ok = ok && preds[k].argmax[size_t(j)] == group[k].tokens[group[k].tokens.size() - size_t(na) + size_t(j)];
          lp += preds[k].logprob[size_t(j)];
        }
        correct += ok;
      }
    }
    r["passkey"].push_back({{"distance", d},
                            {"trials", o.passkey_trials},
                            {"correct", correct},
                            {"accuracy", double(correct) / double(o.passkey_trials)},
                            {"mean_logprob", lp / double(o.passkey_trials)}});
  }
  if (3 * o.assoc_pairs + 3 > L || int64_t(t.keys.size()) < o.assoc_pairs) {
    r["assoc"] = {{"pairs", o.assoc_pairs}, {"skipped", "the pairs do not fit in context " + std::to_string(L) + " or the key pool"}};
    return r;
  }
  const auto seqs = assoc_sequences(t, filler, L, o.assoc_pairs, o.assoc_trials, o.seed);
  const auto preds = scorer(seqs);
  std::vector<int64_t> edges = o.assoc_bins;
  edges.insert(edges.begin(), 0);
  edges.push_back(std::numeric_limits<int64_t>::max());
  std::vector<int64_t> bin_trials(edges.size() - 1, 0), bin_correct(edges.size() - 1, 0);
  int64_t correct = 0;
  for (size_t k = 0; k < seqs.size(); ++k) {
    const bool ok = preds[k].argmax[0] == seqs[k].tokens.back();
    correct += ok;
    for (size_t b = 0; b + 1 < edges.size(); ++b)
      if (seqs[k].distance >= edges[b] && seqs[k].distance < edges[b + 1]) {
        ++bin_trials[b];
        bin_correct[b] += ok;
      }
  }
  json bins = json::array();
  for (size_t b = 0; b + 1 < edges.size(); ++b)
    bins.push_back({{"from", edges[b]},
                    {"to", b + 2 == edges.size() ? json(nullptr) : json(edges[b + 1])},
                    {"trials", bin_trials[b]},
                    {"correct", bin_correct[b]},
                    {"accuracy", bin_trials[b] ? json(double(bin_correct[b]) / double(bin_trials[b])) : json(nullptr)}});
  r["assoc"] = {{"pairs", o.assoc_pairs},
                {"trials", o.assoc_trials},
                {"correct", correct},
                {"accuracy", double(correct) / double(o.assoc_trials)},
                {"chance", 1.0 / double(t.values.size())},
                {"bins", bins}};
  return r;
}

std::vector<int32_t> filler_tokens(const std::string& pattern, int64_t count) {
  std::vector<int32_t> out;
  for (const std::string& path : train::resolve_shards(pattern)) {
    const data::Shard sh = data::Shard::open(path);
    const int64_t n = std::min(sh.num_tokens(), count - int64_t(out.size()));
    const size_t at = out.size();
    out.resize(at + size_t(n));
    sh.copy_tokens(0, n, out.data() + at);
    if (int64_t(out.size()) >= count) break;
  }
  return out;
}

std::string probe_summary(const nlohmann::json& r) {
  using nlohmann::json;
  char buf[64];
  std::string out = "passkey";
  const json& pk = r.contains("passkey") ? r["passkey"] : json::array();
  for (size_t i = 0; i < pk.size(); ++i) {
    out += i ? ", d=" : " d=";
    out += std::to_string(pk[i].value("distance", int64_t(0)));
    if (pk[i].contains("skipped")) {
      out += " skipped";
    } else {
      std::snprintf(buf, sizeof buf, " %.2f", pk[i].value("accuracy", 0.0));
      out += buf;
    }
  }
  const json a = r.value("assoc", json::object());
  if (a.contains("skipped") || !a.contains("accuracy")) return out + "; assoc skipped";
  std::snprintf(buf, sizeof buf, "; assoc %.3f (", a["accuracy"].get<double>());
  out += buf;
  bool first = true;
  for (const json& b : a.value("bins", json::array())) {
    if (b["accuracy"].is_null()) continue;
    out += first ? "" : ", ";
    first = false;
    out += std::to_string(b["from"].get<int64_t>()) + (b["to"].is_null() ? "+" : "-" + std::to_string(b["to"].get<int64_t>()));
    std::snprintf(buf, sizeof buf, " %.2f", b["accuracy"].get<double>());
    out += buf;
  }
  return out + ")";
}

}  // namespace sk::compare
