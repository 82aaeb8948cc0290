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
#include <cstring>
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


}  // namespace

double CausalSelection::mask(int64_t i, int64_t j, double u_j) const {
  if (!in_prefix(i, j)) return 0.0;
  if (saturated(i, j)) return 1.0;
  if (fractional(i, j)) return sparsek_mask_value(u_j, tau[i], EntryState::Fractional);
  return 0.0;
}

CausalSelection CausalSelection::before_walk(int64_t T, int64_t k, int64_t window) {
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
  return s;
}

std::vector<int64_t> CausalSelection::selected_keys(int64_t i) const {
  std::vector<int64_t> out;
  for (int64_t j = 0; j <= i - window; ++j)
    if (selected(i, j)) out.push_back(j);
  return out;
}

TauWalker::TauWalker(int64_t k) : k_(k), tau_(-kInf) {
  SK_CHECK(k >= 1, "sparsek selection: k must be >= 1 (config attention.k), got ", k);
}

TauWalker TauWalker::canonical(const double* u, int64_t n, int64_t k, std::vector<EntryState>* states) {
  TauWalker w(k);
  w.n_prefix_ = n;
  if (states) states->assign(size_t(n), EntryState::Saturated);
  if (n <= k) {  // the walk has not started: every key saturated, tau = -inf
    for (int64_t j = 0; j < n; ++j) w.sat_.push(SatEntry{u[j] - 1.0, j, u[j]});
    w.n_sat_ = n;
    return w;
  }
  const Projection p = sparsek_tau_search(u, n, k);
  w.tau_ = p.tau;
  if (states) std::copy(p.state.begin(), p.state.begin() + n, states->begin());
  for (int64_t j = 0; j < n; ++j) {
    if (p.state[j] == EntryState::Saturated) {
      w.sat_.push(SatEntry{u[j] - 1.0, j, u[j]});
      ++w.n_sat_;
    } else if (p.state[j] == EntryState::Fractional) {
      w.frac_.emplace(u[j], j);
      w.sum_frac_ += u[j];
    }
  }
  return w;
}

bool TauWalker::same_scalars(const TauWalker& o) const {
  auto same_bits = [](double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; };
  // Bitwise even for sum_frac with an empty fractional set: a residual left by the subtractions is
  // carried into the next entering fractional key before the walk resets it (so -0 vs +0 also
  // "differs": conservative, never wrong).
  return k_ == o.k_ && same_bits(tau_, o.tau_) && n_sat_ == o.n_sat_ && n_prefix_ == o.n_prefix_ &&
         same_bits(sum_frac_, o.sum_frac_) && frac_ == o.frac_;
}

void TauWalker::push(double u, int64_t pos, Events& ev) {
  ev.to_fractional.clear();
  ev.to_dead.clear();
  ++n_prefix_;
  // Classify the new key against the old tau.
  if (u - 1.0 >= tau_) {
    sat_.push(SatEntry{u - 1.0, pos, u});
    ++n_sat_;
    ev.entered_as = EntryState::Saturated;
  } else if (u > tau_) {
    frac_.emplace(u, pos);
    sum_frac_ += u;
    ev.entered_as = EntryState::Fractional;
  } else {
    ev.entered_as = EntryState::Dead;
  }
  if (n_prefix_ <= k_) return;  // every key saturated, tau = -inf
  // Walk tau up over the breakpoints while f stays >= k there.
  double nb = kInf;
  for (;;) {
    if (frac_.empty()) sum_frac_ = 0;  // no drift when the set empties
    nb = kInf;
    if (!sat_.empty()) nb = sat_.top().breakpoint;
    if (!frac_.empty()) nb = std::min(nb, frac_.begin()->first);
    if (nb == kInf) break;
    const bool flat_after = (sat_.empty() || sat_.top().breakpoint > nb) && (frac_.empty() || frac_.rbegin()->first <= nb);
    const double n_frac = double(frac_.size());
    const double f_nb = flat_after ? double(n_sat_) : double(n_sat_) + (sum_frac_ - n_frac * nb);
    if (f_nb < double(k_)) break;
    tau_ = nb;
    while (!sat_.empty() && sat_.top().breakpoint <= nb) {  // saturated -> fractional
      const SatEntry e = sat_.top();
      sat_.pop();
      --n_sat_;
      frac_.emplace(e.u, e.pos);
      sum_frac_ += e.u;
      ev.to_fractional.push_back(e.pos);
    }
    while (!frac_.empty() && frac_.begin()->first <= nb) {  // fractional -> dead (never returns)
      const int64_t d = frac_.begin()->second;
      sum_frac_ -= frac_.begin()->first;
      frac_.erase(frac_.begin());
      ev.to_dead.push_back(d);
    }
  }
  SK_CHECK(!frac_.empty(), "sparsek selection: internal error, empty fractional set after position ", pos);
  tau_ = std::clamp((double(n_sat_) + sum_frac_ - double(k_)) / double(frac_.size()), tau_, nb);
}

PrefixSelector::PrefixSelector(int64_t k) : walk_(k) {}

const PrefixSelector::Events& PrefixSelector::push(double u, int64_t pos) {
  ev_.selected = false;
  ev_.evicted = -1;
  // Top-k: one insertion and at most one eviction.
  if (int64_t(top_.size()) < walk_.k()) {
    top_.emplace(u, pos);
    ev_.selected = true;
  } else if (u >= top_.top().first) {  // equal scores: the more recent key wins
    ev_.evicted = top_.top().second;
    top_.pop();
    top_.emplace(u, pos);
    ev_.selected = true;
  }
  walk_.push(u, pos, ev_);
  return ev_;
}

CausalSelection causal_selection(const double* u, int64_t T, int64_t k, int64_t window) {
  check_args(T, k, window);
  CausalSelection s = CausalSelection::before_walk(T, k, window);
  PrefixSelector sel(k);
  for (int64_t i = 0; i < T; ++i) {
    const int64_t j = i - window;
    if (j < 0) continue;  // empty prefix: tau_i = -inf, nothing selected
    const PrefixSelector::Events& ev = sel.push(u[j], j);
    if (ev.selected) s.keys[j].sel_to = T;
    if (ev.evicted >= 0) s.keys[ev.evicted].sel_to = i;
    if (ev.entered_as != EntryState::Saturated) s.keys[j].frac_from = i;
    if (ev.entered_as == EntryState::Dead) s.keys[j].dead_from = i;
    for (int64_t d : ev.to_fractional) s.keys[d].frac_from = i;
    for (int64_t d : ev.to_dead) s.keys[d].dead_from = i;
    s.tau[i] = sel.tau();
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
