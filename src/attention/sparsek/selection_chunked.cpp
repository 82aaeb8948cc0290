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
#include <functional>
#include <limits>
#include <queue>
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

// The selector's tau walk (TauWalker, selection.h: the code causal_selection runs) and every key's
// state, kept from its events (keys past the prefix are unused).
struct Walk {
  TauWalker tau_walk;
  std::vector<EntryState> state;
};

// Canonical state of the prefix [0, n0) (TauWalker::canonical), with room for T keys.
Walk canonical_start(const double* u, int64_t n0, int64_t k, int64_t T) {
  Walk w{TauWalker(k), {}};
  w.tau_walk = TauWalker::canonical(u, n0, k, &w.state);
  w.state.resize(size_t(T), EntryState::Saturated);
  return w;
}

// Equal walk states: every quantity the next pushes read, bitwise, and the same key states.
bool same_state(const Walk& a, const Walk& b, int64_t n0) {
  return a.tau_walk.same_scalars(b.tau_walk) && std::equal(a.state.begin(), a.state.begin() + n0, b.state.begin());
}

struct ChunkRun {
  Walk walk;                   // the state after the chunk's last query
  std::vector<double> tau;     // the chunk's tau_i
  std::vector<Transition> tr;  // its state transitions
};

ChunkRun walk_chunk(Walk start, const double* u, int64_t s, int64_t e, int64_t window) {
  ChunkRun r{std::move(start), {}, {}};
  TauWalker::Events ev;
  for (int64_t i = s; i < e; ++i) {
    const int64_t j = i - window;
    if (j >= 0) {
      r.walk.tau_walk.push(u[j], j, ev);
      r.walk.state[size_t(j)] = ev.entered_as;
      if (ev.entered_as != EntryState::Saturated) r.tr.push_back({j, i, false});
      if (ev.entered_as == EntryState::Dead) r.tr.push_back({j, i, true});
      for (int64_t f : ev.to_fractional) {
        r.walk.state[size_t(f)] = EntryState::Fractional;
        r.tr.push_back({f, i, false});
      }
      for (int64_t d : ev.to_dead) {
        r.walk.state[size_t(d)] = EntryState::Dead;
        r.tr.push_back({d, i, true});
      }
    }
    r.tau.push_back(j >= 0 ? r.walk.tau_walk.tau() : -kInf);
  }
  return r;
}

}  // namespace

CausalSelection causal_selection_chunked(const double* u, int64_t T, int64_t k, int64_t window, int64_t L,
                                         ChunkedSelectionStats* stats) {
  SK_CHECK(T >= 0 && k >= 1 && window >= 0 && L >= 1, "sparsek chunked selection: bad arguments T ", T, ", k ", k,
           ", window ", window, ", L ", L);
  CausalSelection s = CausalSelection::before_walk(T, k, window);
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
    const Walk start = canonical_start(u, n0, k, T);
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
