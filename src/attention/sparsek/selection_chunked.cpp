// Chunked causal selection with verified canonical chunk starts (selection_chunked.h).
// Phase 1 (parallel on a GPU, sequential here): every chunk c builds the canonical state of its
// prefix P_{s_c - 1} and walks its queries, keeping its tau values, its state transitions
// (key, frac_from / dead_from = query) and its end state. Phase 2: chunk by chunk, the start of
// chunk c + 1 is compared with the end state of chunk c as assembled; equal: chunk c + 1's results
// are the sequential walk's; different: chunk c + 1 is walked again from the assembled end state
// (fallback) and the check goes on from there. The top-k needs no check: the top-k of a prefix is
// defined by order alone, so each chunk starts from the exact set.
#include "attention/sparsek/selection_chunked.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <queue>
#include <set>
#include <utility>
#include <vector>

#include "attention/sparsek/projection.h"
#include "util/check.h"

namespace sk::attention::sparsek {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Transition {
  int64_t key, query;
  bool dead;  // false: frac_from, true: dead_from
};

// The tau / state part of PrefixSelector (selection.cpp), the same operations in the same order,
// startable from any state. state: per key 2 saturated, 1 fractional, 0 dead (keys past the
// prefix are unused).
struct TauWalk {
  using Entry = std::pair<double, int64_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> sat;  // (fl(u - 1), pos)
  std::set<Entry> frac;                                                       // (u, pos)
  int64_t k = 0, n_sat = 0, n_prefix = 0;
  double sum_frac = 0, tau = -kInf;
  std::vector<int8_t> state;

  void push(const double* u, int64_t j, int64_t i, std::vector<Transition>& tr) {
    const double uj = u[j];
    ++n_prefix;
    if (uj - 1.0 >= tau) {
      sat.emplace(uj - 1.0, j);
      ++n_sat;
      state[j] = 2;
    } else if (uj > tau) {
      frac.emplace(uj, j);
      sum_frac += uj;
      state[j] = 1;
      tr.push_back({j, i, false});
    } else {
      state[j] = 0;
      tr.push_back({j, i, false});
      tr.push_back({j, i, true});
    }
    if (n_prefix <= k) return;
    double nb = kInf;
    for (;;) {
      if (frac.empty()) sum_frac = 0;
      nb = kInf;
      if (!sat.empty()) nb = sat.top().first;
      if (!frac.empty()) nb = std::min(nb, frac.begin()->first);
      if (nb == kInf) break;
      const bool flat_after = (sat.empty() || sat.top().first > nb) && (frac.empty() || frac.rbegin()->first <= nb);
      const double n_frac = double(frac.size());
      const double f_nb = flat_after ? double(n_sat) : double(n_sat) + (sum_frac - n_frac * nb);
      if (f_nb < double(k)) break;
      tau = nb;
      while (!sat.empty() && sat.top().first <= nb) {
        const int64_t e = sat.top().second;
        sat.pop();
        --n_sat;
        frac.emplace(u[e], e);
        sum_frac += u[e];
        state[e] = 1;
        tr.push_back({e, i, false});
      }
      while (!frac.empty() && frac.begin()->first <= nb) {
        const int64_t d = frac.begin()->second;
        sum_frac -= frac.begin()->first;
        frac.erase(frac.begin());
        state[d] = 0;
        tr.push_back({d, i, true});
      }
    }
    SK_CHECK(!frac.empty(), "sparsek chunked selection: internal error, empty fractional set at query ", i);
    tau = std::clamp((double(n_sat) + sum_frac - double(k)) / double(frac.size()), tau, nb);
  }
};

// Canonical state of the prefix [0, n0): tau and states from the operator, sums in key order.
TauWalk canonical_start(const double* u, int64_t n0, int64_t k, int64_t T) {
  TauWalk w;
  w.k = k;
  w.n_prefix = n0;
  w.state.assign(size_t(T), 2);
  if (n0 <= k) {  // the walk has not started: every key saturated, tau = -inf
    for (int64_t j = 0; j < n0; ++j) w.sat.emplace(u[j] - 1.0, j);
    w.n_sat = n0;
    return w;
  }
  const Projection p = sparsek_tau_search(u, n0, k);
  w.tau = p.tau;
  for (int64_t j = 0; j < n0; ++j) {
    w.state[j] = int8_t(p.state[j]);
    if (p.state[j] == EntryState::Saturated) {
      w.sat.emplace(u[j] - 1.0, j);
      ++w.n_sat;
    } else if (p.state[j] == EntryState::Fractional) {
      w.frac.emplace(u[j], j);
      w.sum_frac += u[j];
    }
  }
  return w;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// Equal walk states: every quantity the next pushes read, bitwise. (The sets follow from the states.)
bool same_state(const TauWalk& a, const TauWalk& b, int64_t n0) {
  if (!same_bits(a.tau, b.tau) || a.n_sat != b.n_sat || a.frac.size() != b.frac.size() || a.n_prefix != b.n_prefix)
    return false;
  // Bitwise even when the fractional set is empty: a residual left by the subtractions is carried
  // into the next entering fractional key before the walk resets it (so -0 vs +0 also "differs":
  // a conservative check, never a wrong one).
  if (!same_bits(a.sum_frac, b.sum_frac)) return false;
  return std::equal(a.state.begin(), a.state.begin() + n0, b.state.begin());
}

struct ChunkRun {
  TauWalk walk;                  // the state after the chunk's last query
  std::vector<double> tau;       // the chunk's tau_i
  std::vector<Transition> tr;    // its state transitions
};

ChunkRun walk_chunk(TauWalk start, const double* u, int64_t s, int64_t e, int64_t window) {
  ChunkRun r;
  r.walk = std::move(start);
  for (int64_t i = s; i < e; ++i) {
    const int64_t j = i - window;
    if (j >= 0) r.walk.push(u, j, i, r.tr);
    r.tau.push_back(j >= 0 ? r.walk.tau : -kInf);
  }
  return r;
}

}  // namespace

CausalSelection causal_selection_chunked(const double* u, int64_t T, int64_t k, int64_t window, int64_t L,
                                         ChunkedSelectionStats* stats) {
  SK_CHECK(T >= 0 && k >= 1 && window >= 0 && L >= 1, "sparsek chunked selection: bad arguments T ", T, ", k ", k,
           ", window ", window, ", L ", L);
  CausalSelection s;
  s.T = T;
  s.k = k;
  s.window = window;
  s.tau.assign(size_t(T), -kInf);
  s.keys.resize(size_t(T));
  for (int64_t j = 0; j < T; ++j) {
    const int64_t enter = std::min(j + window, T);
    s.keys[j] = KeyRanges{enter, T, T, enter, enter};
  }
  ChunkedSelectionStats st;
  const int64_t n_chunks = (T + L - 1) / L;

  // Top-k per chunk from the exact top-k of its prefix: (u, pos) min-heap of the k largest.
  using Entry = std::pair<double, int64_t>;
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t cs = c * L, ce = std::min(cs + L, T), n0 = std::max<int64_t>(0, cs - window);
    std::vector<Entry> pre;
    for (int64_t j = 0; j < n0; ++j) pre.emplace_back(u[j], j);
    if (int64_t(pre.size()) > k) {
      std::nth_element(pre.begin(), pre.begin() + k, pre.end(), std::greater<Entry>());
      pre.resize(size_t(k));
    }
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> top(pre.begin(), pre.end());
    for (int64_t i = cs; i < ce; ++i) {
      const int64_t j = i - window;
      if (j < 0) continue;
      if (int64_t(top.size()) < k) {
        top.emplace(u[j], j);
        s.keys[j].sel_to = T;
      } else if (u[j] >= top.top().first) {
        s.keys[top.top().second].sel_to = i;  // evicted here (selected in an earlier or this chunk)
        top.pop();
        top.emplace(u[j], j);
        s.keys[j].sel_to = T;
      }
    }
  }

  // Phase 1: every chunk from its canonical start (independent of the others).
  std::vector<ChunkRun> runs;
  runs.reserve(size_t(n_chunks));
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t cs = c * L, ce = std::min(cs + L, T), n0 = std::max<int64_t>(0, cs - window);
    runs.push_back(walk_chunk(canonical_start(u, n0, k, T), u, cs, ce, window));
  }
  // Phase 2: verify each start against the assembled end state of the previous chunk; fall back.
  for (int64_t c = 1; c < n_chunks; ++c) {
    const int64_t cs = c * L, ce = std::min(cs + L, T), n0 = std::max<int64_t>(0, cs - window);
    const TauWalk start = canonical_start(u, n0, k, T);
    const bool real = n0 > k;
    st.chunks += real ? 1 : 0;
    if (same_state(start, runs[size_t(c - 1)].walk, n0)) {
      st.verified += real ? 1 : 0;
      continue;
    }
    if (st.first_mismatch < 0) st.first_mismatch = cs;
    runs[size_t(c)] = walk_chunk(runs[size_t(c - 1)].walk, u, cs, ce, window);
  }
  // Assemble tau and the ranges (each transition happens in exactly one chunk).
  for (int64_t c = 0; c < n_chunks; ++c) {
    const ChunkRun& r = runs[size_t(c)];
    std::copy(r.tau.begin(), r.tau.end(), s.tau.begin() + c * L);
    for (const Transition& t : r.tr) (t.dead ? s.keys[t.key].dead_from : s.keys[t.key].frac_from) = t.query;
  }
  if (stats) *stats = st;
  return s;
}

}  // namespace sk::attention::sparsek
