// Causal per-prefix SparseK selection (../shared/docs/attention-spec.md section 4.3) for one
// (batch, head) sequence of scores u (T).
//   Query i's candidate prefix is P_i = {j : j <= i - w} (w = 0: j <= i).
//   tau_i = tau(u_{P_i}, k) (projection.h conventions: -infinity while |P_i| <= k, the largest root
//   when f is flat), m_ij = clip(u_j - tau_i, 0, 1).
//   Sel_i = the k largest u_j in P_i, ties to the more recent position.
// Because tau_i is non-decreasing, every key j is saturated, then fractional, then dead over
// contiguous query ranges, and selected over one contiguous range; the result stores those ranges
// per key (O(T) memory) and can list Sel_i per query.
//   causal_selection:         incremental (PrefixSelector), O(T log T): a min-heap of saturated keys (by u_j - 1,
//                             the breakpoint where they turn fractional), a min-heap of fractional
//                             keys (by u_j, where they die), and a size-k min-heap for the top-k.
//                             After each insertion tau walks upward over the next breakpoints.
//   causal_selection_brute:   for each query, SPARSEK on the whole prefix (sparsek_tau_search) and
//                             a sort for the top-k, stored densely per (query, key): O(T^2 log T),
//                             the test reference (it does not assume the contiguous ranges).
// Tests: tests/attention/sparsek/test_selection.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <queue>
#include <set>
#include <utility>
#include <vector>

#include "attention/sparsek/projection.h"

namespace sk::attention::sparsek {

struct KeyRanges {
  // Query ranges for key j (each an index in [0, T]): the key enters the prefix at query
  // `enter` = j + w, is saturated on [enter, frac_from), fractional on [frac_from, dead_from) and
  // dead from dead_from on; selected on [sel_from, sel_to) (empty when sel_from == sel_to).
  int64_t enter = 0, frac_from = 0, dead_from = 0, sel_from = 0, sel_to = 0;
};

struct CausalSelection {
  int64_t T = 0, k = 0, window = 0;
  std::vector<double> tau;      // (T): tau_i; -infinity while |P_i| <= k or P_i is empty
  std::vector<KeyRanges> keys;  // (T): per key j

  bool in_prefix(int64_t i, int64_t j) const { return j <= i - window && j >= 0; }
  bool selected(int64_t i, int64_t j) const { return keys[j].sel_from <= i && i < keys[j].sel_to; }
  bool fractional(int64_t i, int64_t j) const { return keys[j].frac_from <= i && i < keys[j].dead_from; }
  bool saturated(int64_t i, int64_t j) const { return keys[j].enter <= i && i < keys[j].frac_from; }
  // m_ij = clip(u_j - tau_i, 0, 1), exactly 1 / 0 for saturated / dead keys (0 outside P_i).
  double mask(int64_t i, int64_t j, double u_j) const;
  // Sel_i as key positions, ascending.
  std::vector<int64_t> selected_keys(int64_t i) const;
  // The state before any query is walked: tau = -inf everywhere, every key saturated from its
  // entry to the end and never selected (the walks then set the ranges where things change).
  static CausalSelection before_walk(int64_t T, int64_t k, int64_t window);
};

// The brute-force result, dense over (query i, key j).
struct DenseSelection {
  int64_t T = 0;
  std::vector<double> tau;      // (T)
  std::vector<int8_t> state;    // (T, T): -1 outside P_i, else int(EntryState) (projection.h)
  std::vector<uint8_t> sel;     // (T, T): 1 where j in Sel_i
};

// The tau part of the incremental selection: the saturated keys (min-heap by their breakpoint
// fl(u - 1)), the fractional keys (ordered by u), their counts and sum, and tau. push(u, pos) adds
// the next key of the prefix (positions increase from push to push) and reports what changed.
// canonical() builds the state of a whole prefix directly (tau and every key's state from the
// SPARSEK operator, the fractional sum in key order), so a walk can start anywhere
// (selection_chunked.h); same_scalars() compares what the next push reads, bitwise.
class TauWalker {
 public:
  struct Events {
    EntryState entered_as = EntryState::Saturated;  // the new key's state against the old tau
    std::vector<int64_t> to_fractional, to_dead;    // positions whose state changed (in order)
  };
  explicit TauWalker(int64_t k);
  // states (optional): each key's state in that prefix, n entries.
  static TauWalker canonical(const double* u, int64_t n, int64_t k, std::vector<EntryState>* states = nullptr);
  void push(double u, int64_t pos, Events& ev);  // ev is overwritten
  double tau() const { return tau_; }           // -infinity while size() <= k
  int64_t size() const { return n_prefix_; }
  int64_t tracked_scores() const { return n_sat_ + int64_t(frac_.size()); }  // saturated + fractional
  int64_t k() const { return k_; }
  // tau, the counts and the fractional sum equal bit for bit, and the same fractional keys. (Which
  // keys are saturated or dead the caller compares: it knows them from the events.)
  bool same_scalars(const TauWalker& o) const;

 private:
  using Entry = std::pair<double, int64_t>;  // (u, pos)
  struct SatEntry {
    double breakpoint;  // fl(u - 1): where the key turns fractional
    int64_t pos;
    double u;
    bool operator>(const SatEntry& o) const { return breakpoint != o.breakpoint ? breakpoint > o.breakpoint : pos > o.pos; }
  };
  int64_t k_;
  std::priority_queue<SatEntry, std::vector<SatEntry>, std::greater<SatEntry>> sat_;  // next to turn fractional on top
  std::set<Entry> frac_;  // (u, pos): minimum dies next; maximum tells when all die at once
  int64_t n_sat_ = 0, n_prefix_ = 0;
  double sum_frac_ = 0, tau_;
};

// The incremental state behind causal_selection, one key at a time (also what generation keeps:
// the scores of the saturated and fractional keys are scalars, not KV): the TauWalker plus the
// top-k. push(u, pos) adds the next key of the prefix and reports what changed; keys are
// identified by the caller's positions, which must increase from push to push (ties in u go to
// the later push).
class PrefixSelector {
 public:
  struct Events : TauWalker::Events {
    bool selected = false;  // the new key joined the top-k
    int64_t evicted = -1;   // position that left the top-k (-1: none)
  };
  explicit PrefixSelector(int64_t k);
  const Events& push(double u, int64_t pos);
  double tau() const { return walk_.tau(); }
  int64_t size() const { return walk_.size(); }
  // Scores held for tau (saturated + fractional keys); dead keys are forgotten.
  int64_t tracked_scores() const { return walk_.tracked_scores(); }
  int64_t k() const { return walk_.k(); }

 private:
  using Entry = std::pair<double, int64_t>;  // (u, pos)
  TauWalker walk_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> top_;  // worst selected key on top (ties: the older one)
  Events ev_;
};

// u: T scores (u_j already includes the position slope). k >= 1, window >= 0.
CausalSelection causal_selection(const double* u, int64_t T, int64_t k, int64_t window);
DenseSelection causal_selection_brute(const double* u, int64_t T, int64_t k, int64_t window);

}  // namespace sk::attention::sparsek
