// Causal per-prefix SparseK selection (selection.h): the incremental heap walk and the brute force.
//
// Incremental invariant after query i: tau = tau_i; `sat` holds the saturated keys of P_i keyed by
// their breakpoint fl(u_j - 1), `frac` the fractional keys keyed by u_j (an ordered set: its
// minimum is the next key to die, its maximum tells whether all die at once; n_frac, sum_frac),
// and on the open segment right of tau f(t) = n_sat + sum_frac - n_frac * t. When key j = i - w
// enters, it is classified against the old tau (f can only grow), then tau walks up over the next
// breakpoint nb = min(sat top, frac top) while f(nb) >= k (demote saturated keys reaching nb, then
// kill fractional keys reaching nb), and finally solves f(tau) = k inside the last segment. Each key
// is demoted once and killed once: O(T log T) per sequence.
// When every fractional key dies at nb and none turns fractional there, f(nb) is taken as the exact
// integer n_sat instead of n_sat + sum_frac - n_frac * nb: the cancellation could otherwise put a
// root that sits exactly on a flat stretch (f = k right of nb) just left of nb, far from the largest
// root.
#include "attention/sparsek/selection.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <set>

#include "attention/sparsek/projection.h"
#include "util/check.h"

namespace sk::attention::sparsek {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_args(int64_t T, int64_t k, int64_t window) {
  SK_CHECK(T >= 0, "sparsek selection: T must be >= 0, got ", T);
  SK_CHECK(k >= 1, "sparsek selection: k must be >= 1 (config attention.k), got ", k);
  SK_CHECK(window >= 0, "sparsek selection: window must be >= 0 (config attention.window), got ", window);
}

using Entry = std::pair<double, int64_t>;  // (key value, position)
using MinHeap = std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>>;

}  // namespace

double CausalSelection::mask(int64_t i, int64_t j, double u_j) const {
  if (!in_prefix(i, j)) return 0.0;
  if (saturated(i, j)) return 1.0;
  if (fractional(i, j)) return sparsek_mask_value(u_j, tau[i], EntryState::Fractional);
  return 0.0;
}

std::vector<int64_t> CausalSelection::selected_keys(int64_t i) const {
  std::vector<int64_t> out;
  for (int64_t j = 0; j <= i - window; ++j)
    if (selected(i, j)) out.push_back(j);
  return out;
}

CausalSelection causal_selection(const double* u, int64_t T, int64_t k, int64_t window) {
  check_args(T, k, window);
  CausalSelection s;
  s.T = T;
  s.k = k;
  s.window = window;
  s.tau.assign(size_t(T), -kInf);
  s.keys.resize(size_t(T));
  for (int64_t j = 0; j < T; ++j) {
    const int64_t enter = std::min(j + window, T);
    s.keys[j] = KeyRanges{enter, T, T, enter, enter};  // saturated to the end, never selected
  }
  MinHeap sat, top;       // top: (u_j, j), the worst selected key on top (ties: the older one)
  std::set<Entry> frac;   // (u_j, j)
  int64_t n_sat = 0, n_frac = 0, n_prefix = 0;
  double sum_frac = 0, tau = -kInf;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t j = i - window;
    if (j < 0) continue;  // empty prefix: tau_i = -inf, nothing selected
    const double uj = u[j];
    ++n_prefix;
    // Top-k: one insertion and at most one eviction.
    if (int64_t(top.size()) < k) {
      top.emplace(uj, j);
      s.keys[j].sel_to = T;
    } else if (uj >= top.top().first) {  // equal scores: the more recent key wins
      s.keys[top.top().second].sel_to = i;
      top.pop();
      top.emplace(uj, j);
      s.keys[j].sel_to = T;
    }
    // Classify the new key against the old tau.
    if (uj - 1.0 >= tau) {
      sat.emplace(uj - 1.0, j);
      ++n_sat;
    } else if (uj > tau) {
      frac.emplace(uj, j);
      ++n_frac;
      sum_frac += uj;
      s.keys[j].frac_from = i;
    } else {
      s.keys[j].frac_from = s.keys[j].dead_from = i;
    }
    if (n_prefix <= k) continue;  // every key saturated, tau = -inf
    // Walk tau up over the breakpoints while f stays >= k there.
    double nb = kInf;
    for (;;) {
      if (n_frac == 0) sum_frac = 0;  // no drift when the set empties
      nb = kInf;
      if (!sat.empty()) nb = sat.top().first;
      if (!frac.empty()) nb = std::min(nb, frac.begin()->first);
      if (nb == kInf) break;
      const bool flat_after = (sat.empty() || sat.top().first > nb) && (frac.empty() || frac.rbegin()->first <= nb);
      const double f_nb = flat_after ? double(n_sat) : double(n_sat) + (sum_frac - double(n_frac) * nb);
      if (f_nb < double(k)) break;
      tau = nb;
      while (!sat.empty() && sat.top().first <= nb) {  // saturated -> fractional
        const int64_t d = sat.top().second;
        sat.pop();
        --n_sat;
        ++n_frac;
        sum_frac += u[d];
        frac.emplace(u[d], d);
        s.keys[d].frac_from = i;
      }
      while (!frac.empty() && frac.begin()->first <= nb) {  // fractional -> dead (never returns)
        const int64_t d = frac.begin()->second;
        frac.erase(frac.begin());
        --n_frac;
        sum_frac -= u[d];
        s.keys[d].dead_from = i;
      }
    }
    SK_CHECK(n_frac > 0, "sparsek selection: internal error, empty fractional set at query ", i);
    tau = std::clamp((double(n_sat) + sum_frac - double(k)) / double(n_frac), tau, nb);
    s.tau[i] = tau;
  }
  return s;
}

DenseSelection causal_selection_brute(const double* u, int64_t T, int64_t k, int64_t window) {
  check_args(T, k, window);
  DenseSelection d;
  d.T = T;
  d.tau.assign(size_t(T), -kInf);
  d.state.assign(size_t(T * T), int8_t(-1));
  d.sel.assign(size_t(T * T), 0);
  std::vector<int64_t> order;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t n = i - window + 1;  // P_i = [0, n)
    if (n <= 0) continue;
    Projection p = sparsek_tau_search(u, n, k);
    d.tau[i] = p.tau;
    for (int64_t j = 0; j < n; ++j) d.state[i * T + j] = int8_t(p.state[j]);
    order.resize(size_t(n));
    for (int64_t j = 0; j < n; ++j) order[j] = j;
    std::sort(order.begin(), order.end(), [u](int64_t a, int64_t b) { return u[a] != u[b] ? u[a] > u[b] : a > b; });
    for (int64_t r = 0; r < std::min(n, k); ++r) d.sel[i * T + order[r]] = 1;
  }
  return d;
}

}  // namespace sk::attention::sparsek
