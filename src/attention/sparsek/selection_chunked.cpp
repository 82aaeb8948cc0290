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
#include <utility>
#include <vector>

#include "attention/sparsek/projection.h"
#include "kernels/attention/sparsek/selection_chunked_common.h"
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


// ---- CPU model of the GPU chunked pass ----

namespace {

using namespace sk_selchunk;

// f(t) = #{fl(u - 1) >= t} + sum_{fractional} (u - t), as the kernel's bisection pass evaluates it
// (here in key order; the kernel sums in a fixed tree order: equal when the sums are exact).
bool f_reaches(const float* u, int64_t n0, double t, int64_t k) {
  int cnt = 0;
  double sum = 0.0;
  for (int64_t j = 0; j < n0; ++j) {
    const double x = double(u[j]);
    if (breakpoint(x) >= t) ++cnt;
    else if (x > t) sum = dadd(sum, dsub(x, t));
  }
  return dadd(double(cnt), sum) >= double(k);
}

void pivots(const float* u, int64_t n0, double lo, double hi, double& ge, double& lt) {
  ge = INFINITY;
  lt = -INFINITY;
  const double mid = bisect_mid(lo, hi);
  for (int64_t j = 0; j < n0; ++j) bisect_fold(double(u[j]), lo, hi, mid, ge, lt);
}

struct VecSink {
  CausalSelection* s;
  void frac_from(int key, int i) { s->keys[size_t(key)].frac_from = i; }
  void dead_from(int key, int i) { s->keys[size_t(key)].dead_from = i; }
  void sel_to(int key, int i) { s->keys[size_t(key)].sel_to = i; }
};

}  // namespace

CanonicalStartModel canonical_start_gpu_model(const float* u, int64_t n0, int64_t k, int64_t fcap) {
  CanonicalStartModel m;
  const bool walked = n0 > k;
  m.state.assign(size_t(n0), uint8_t(2));
  m.tau = -INFINITY;
  for (int64_t j = 0; j < n0; ++j)
    if (!score_compact_ok(u[j])) m.fail |= kFailScores;
  if (m.fail) return m;
  uint64_t thr = 0;
  if (walked) {
    std::vector<uint64_t> keys(static_cast<size_t>(n0));
    for (int64_t j = 0; j < n0; ++j) keys[size_t(j)] = make_key(u[j], int(j));
    std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<uint64_t>());
    thr = keys[size_t(k - 1)];  // the k-th largest (the kernel's radix select)
    const double vk = key_u(thr);
    double lo = breakpoint(vk), hi = vk, ge, lt, piv = 0;
    pivots(u, n0, lo, hi, ge, lt);
    bool have = bisect_pivot(ge, lt, piv);
    int iter = 0;
    while (have) {
      if (++iter > 400) {
        m.fail |= kFailInternal;
        return m;
      }
      if (f_reaches(u, n0, piv, k)) {
        lo = piv;
        pivots(u, n0, lo, hi, ge, lt);
      } else {
        hi = piv;
        pivots(u, n0, lo, hi, ge, lt);
      }
      have = bisect_pivot(ge, lt, piv);
    }
    m.lo = lo;
    m.hi = hi;
  }
  for (int64_t j = 0; j < n0; ++j) {
    const double x = double(u[j]);
    const uint64_t key = make_key(u[j], int(j));
    uint8_t st = 2;
    if (walked) st = breakpoint(x) >= m.hi ? 2 : (x <= m.lo ? 0 : 1);
    m.state[size_t(j)] = st;
    if (st == 2) m.sat.push_back(key);
    if (st == 1) m.frac.push_back(key);  // key order
    if (!walked || key >= thr) m.top.push_back(key);
  }
  m.n_sat = int(m.sat.size());
  m.n_frac = int(m.frac.size());
  if (m.n_sat > k + 1) m.fail |= kFailCapacity;
  if ((walked && m.n_frac == 0) || int64_t(m.top.size()) != std::min(k, n0)) m.fail |= kFailInternal;
  if (m.fail) return m;
  double sum = 0.0;
  for (uint64_t key : m.frac) sum = dadd(sum, key_u(key));
  m.sum_frac = sum;
  std::sort(m.top.begin(), m.top.end());
  std::sort(m.sat.begin(), m.sat.end());
  std::sort(m.frac.begin(), m.frac.end());
  if (walked) m.tau = canonical_tau(sum, m.n_sat, m.n_frac, int(k), m.lo, m.hi);
  return m;
}

namespace {

// The walk of one chunk with heaps of arity A (KeyHeapT): top-k walk, then the tau walk.
// Returns false on heap overflow; n_sat / n_frac get the end heaps' sizes.
template <int A, class Sink>
bool walk_chunk(const float* u, int cs, int ce, int K, int W, std::vector<uint64_t>& top, int n_top,
                std::vector<uint64_t>& sat, std::vector<uint64_t>& frac, int fr_cap, TauState& ts, CausalSelection& s,
                Sink& sink, int* n_sat, int* n_frac) {
  KeyHeapT<A> th{top.data(), n_top, K};
  for (int i = std::max(cs, W); i < ce; ++i) topk_walk_step(th, u[i - W], i - W, i, K, sink);
  KeyHeapT<A> sh{sat.data(), *n_sat, K + 1}, fh{frac.data(), *n_frac, fr_cap};
  bool ok = true;
  for (int i = cs; i < ce; ++i) {
    if (i < W) {
      s.tau[size_t(i)] = -INFINITY;
      continue;
    }
    if (!tau_walk_step(ts, sh, fh, u[i - W], i - W, i, K, sink)) {
      ok = false;
      break;
    }
    s.tau[size_t(i)] = ts.tau;
  }
  *n_sat = sh.n;
  *n_frac = fh.n;
  return ok;
}

}  // namespace

CausalSelection causal_selection_chunked_gpu_model(const float* u, int64_t T, int64_t k, int64_t window, int64_t L,
                                                   int64_t fcap, ChunkedGpuModelStats* stats, int heap_arity) {
  SK_CHECK(T >= 0 && T < (int64_t(1) << 30) && window >= 0 && window < (int64_t(1) << 30) && L >= 1,
           "chunked GPU model: bad arguments");
  return causal_selection_chunked_gpu_model(
      u, k, sk_chunk_schedule_uniform(int(T), int(window), int(std::min<int64_t>(L, int64_t(1) << 30))), fcap, stats,
      heap_arity);
}

CausalSelection causal_selection_chunked_gpu_model(const float* u, int64_t k, const SkChunkSchedule& schedule,
                                                   int64_t fcap, ChunkedGpuModelStats* stats, int heap_arity) {
  const int64_t T = schedule.seq_len, window = schedule.window;
  SK_CHECK(T >= 0 && k >= 1 && window >= 0 && schedule.len >= 1 && schedule.chunks == sk_chunk_count(schedule) &&
               fcap >= 1 && (heap_arity == 2 || heap_arity == 4),
           "chunked GPU model: bad arguments");
  ChunkedGpuModelStats st;
  CausalSelection s = CausalSelection::before_walk(T, k, window);
  for (auto& e : s.keys) e.sel_to = T;  // the kernel's init: sel_to = T until the key enters
  const int64_t C = schedule.chunks;
  // b_c: chunk c covers queries [bounds[c], bounds[c + 1]).
  std::vector<int> bounds(size_t(C + 1), 0);
  for (int64_t c = 0; c < C; ++c) bounds[size_t(c + 1)] = sk_chunk_next(schedule, bounds[size_t(c)]);
  struct End {
    double tau, sum;
    int n_sat, n_frac;
    std::vector<uint8_t> state;
  };
  std::vector<End> ends(static_cast<size_t>(C + 1));
  std::vector<CanonicalStartModel> starts(static_cast<size_t>(C));
  const int K = int(k), W = int(window);
  for (int64_t c = 0; c < C && !st.fail; ++c) {
    const int cs = bounds[size_t(c)], ce = bounds[size_t(c + 1)];
    const int n0 = std::max(0, cs - W);
    CanonicalStartModel m = canonical_start_gpu_model(u, n0, k, fcap);
    for (int j = std::max(0, cs - W); j < std::max(0, ce - W); ++j)
      if (!score_compact_ok(u[j])) m.fail |= kFailScores;
    if (m.fail) {
      st.fail |= m.fail;
      break;
    }
    VecSink sink{&s};
    std::vector<uint64_t> top = m.top, sat = m.sat, frac = m.frac;
    // The kernel's fractional heap: shared memory (fcap entries) when start set + saturated keys +
    // the chunk's keys fit, else global storage with room for ce keys; it never overflows.
    const int fr_cap = int64_t(m.n_frac) + m.n_sat + (ce - cs) <= fcap ? int(fcap) : ce;
    top.resize(size_t(K));
    sat.resize(size_t(K + 1));
    frac.resize(size_t(fr_cap));
    TauState ts{m.tau, m.sum_frac, m.n_frac > 0 ? key_u(frac[size_t(m.n_frac - 1)]) : -INFINITY, n0};
    int n_sat = m.n_sat, n_frac = m.n_frac;
    const bool ok = heap_arity == 4
                        ? walk_chunk<4>(u, cs, ce, K, W, top, int(m.top.size()), sat, frac, fr_cap, ts, s, sink, &n_sat, &n_frac)
                        : walk_chunk<2>(u, cs, ce, K, W, top, int(m.top.size()), sat, frac, fr_cap, ts, s, sink, &n_sat, &n_frac);
    if (!ok) st.fail |= kFailCapacity;
    if (st.fail) break;
    End& e = ends[size_t(c + 1)];
    e = End{ts.tau, ts.sum_frac, n_sat, n_frac, std::vector<uint8_t>(size_t(std::max(0, ce - W)), 0)};
    for (int x = 0; x < n_sat; ++x) e.state[size_t(key_pos(sat[size_t(x)]))] = 2;
    for (int x = 0; x < n_frac; ++x) e.state[size_t(key_pos(frac[size_t(x)]))] = 1;
    starts[size_t(c)] = std::move(m);
  }
  if (!st.fail) {
    auto bits = [](double x) {
      uint64_t b;
      std::memcpy(&b, &x, 8);
      return b;
    };
    for (int64_t c = 1; c < C; ++c) {
      const int n0 = std::max<int>(0, bounds[size_t(c)] - W);
      if (n0 == 0) continue;
      const CanonicalStartModel& a = starts[size_t(c)];
      const End& b = ends[size_t(c)];
      const bool same = bits(a.tau) == bits(b.tau) && bits(a.sum_frac) == bits(b.sum) && a.n_sat == b.n_sat &&
                        a.n_frac == b.n_frac && a.state == b.state;
      if (n0 > k) {
        ++st.chunks;
        st.verified += same ? 1 : 0;
      }
      if (!same) {
        st.fail |= kFailVerify;
        if (st.first_mismatch < 0) st.first_mismatch = bounds[size_t(c)];
      }
    }
  }
  if (stats) *stats = st;
  if (st.fail) {  // the GPU's fallback: the sequential kernel from scratch
    std::vector<double> ud(static_cast<size_t>(T));
    for (int64_t j = 0; j < T; ++j) ud[size_t(j)] = double(u[j]);
    return causal_selection(ud.data(), T, k, window);
  }
  return s;
}

}  // namespace sk::attention::sparsek
