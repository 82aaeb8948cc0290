// The SPARSEK operator (projection.h): median search over breakpoints, the sort-based reference
// walk, and the differentiable op over the last dim of a tensor.
//
// Breakpoints are the values z_i and fl(z_i - 1) as computed in double. Entries are classified
// against a point t with those same computed values (saturated: fl(z_i - 1) >= t; dead: z_i <= t;
// fractional otherwise), so an entry sitting on its own breakpoint is classified exactly and the
// final segment always has a non-empty fractional set (see the argument in docs/SPARSEK.md).
#include "attention/sparsek/projection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "util/check.h"

namespace sk::attention::sparsek {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// f(t) = sum_i clip(z_i - t, 0, 1), classifying entries against the computed breakpoints.
double f_at(const double* z, int64_t n, double t) {
  int64_t saturated = 0;
  double frac = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (z[i] - 1.0 >= t) ++saturated;
    else if (z[i] > t) frac += z[i] - t;
  }
  return double(saturated) + frac;
}

void check_budget(int64_t k) { SK_CHECK(k >= 1, "sparsek: the budget k must be >= 1, got ", k); }

}  // namespace

double sparsek_mask_value(double z, double tau, EntryState s) {
  switch (s) {
    case EntryState::Dead: return 0.0;
    case EntryState::Saturated: return 1.0;
    case EntryState::Fractional: return std::clamp(z - tau, 0.0, 1.0);
  }
  return 0.0;
}

Projection sparsek_tau_search(const double* z, int64_t n, int64_t k) {
  check_budget(k);
  Projection p;
  p.state.assign(size_t(n), EntryState::Saturated);
  if (n <= k) {
    p.tau = -kInf;
    p.n_saturated = n;
    return p;
  }
  // Candidates: every breakpoint. Invariant: f(lo) >= k > f(hi), no candidate outside (lo, hi).
  std::vector<double> cand(2 * size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    cand[2 * i] = z[i];
    cand[2 * i + 1] = z[i] - 1.0;
  }
  double lo = -kInf, hi = kInf;
  while (!cand.empty()) {
    auto mid = cand.begin() + cand.size() / 2;
    std::nth_element(cand.begin(), mid, cand.end());
    const double m = *mid;
    if (f_at(z, n, m) >= double(k)) {
      lo = m;
      cand.erase(std::remove_if(cand.begin(), cand.end(), [m](double b) { return b <= m; }), cand.end());
    } else {
      hi = m;
      cand.erase(std::remove_if(cand.begin(), cand.end(), [m](double b) { return b >= m; }), cand.end());
    }
  }
  // lo is finite (f(min z - 1) = n > k) and hi is finite (f(max z) = 0 < k). On (lo, hi) the
  // states are constant; the fractional set there is non-empty because f drops across the segment.
  double sum_frac = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (z[i] - 1.0 >= hi) {
      p.state[i] = EntryState::Saturated;
      ++p.n_saturated;
    } else if (z[i] <= lo) {
      p.state[i] = EntryState::Dead;
    } else {
      p.state[i] = EntryState::Fractional;
      ++p.n_fractional;
      sum_frac += z[i];
    }
  }
  SK_CHECK(p.n_fractional > 0, "sparsek: internal error, no fractional entry in the root segment [", lo, ", ", hi,
           ") (n ", n, ", k ", k, ")");
  p.tau = std::clamp((sum_frac + double(p.n_saturated) - double(k)) / double(p.n_fractional), lo, hi);
  return p;
}

double sparsek_tau_sorted(const double* z, int64_t n, int64_t k) {
  check_budget(k);
  if (n <= k) return -kInf;
  // (value, slope change when tau passes it going down): z_i starts a fractional entry (+1),
  // z_i - 1 saturates it (-1).
  std::vector<std::pair<double, int>> bp;
  bp.reserve(2 * size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    bp.emplace_back(z[i], +1);
    bp.emplace_back(z[i] - 1.0, -1);
  }
  std::sort(bp.begin(), bp.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  double t = bp[0].first, f = 0;  // f(max z) = 0; invariant: f(t) < k
  int64_t slope = 0;              // #{i : z_i - 1 < tau < z_i} inside the current open segment
  int64_t saturated = 0;          // #{i : z_i - 1 >= tau}
  size_t idx = 0;
  while (idx < bp.size()) {
    const double v = bp[idx].first;
    const double fv = f + double(slope) * (t - v);
    if (fv >= double(k)) return t - (double(k) - f) / double(slope);  // slope > 0 since f(t) < k
    t = v;
    f = fv;
    for (; idx < bp.size() && bp[idx].first == v; ++idx) {
      slope += bp[idx].second;
      saturated += bp[idx].second < 0;
    }
    if (slope == 0) f = double(saturated);  // no fractional entry: f is an exact integer
    if (f >= double(k)) return t;            // f is flat from here down: t is the largest root
  }
  SK_FAIL("sparsek_tau_sorted: internal error, f never reached k = ", k, " (n ", n, ")");
}

Tensor sparsek_project(const Tensor& z_in, int64_t k) {
  ops::check_floating("sparsek_project", "z", z_in);
  SK_CHECK(z_in.ndim() >= 1, "sparsek_project: z must have at least one dim, got ", z_in.str());
  SK_CHECK(z_in.device().is_cpu(), "sparsek_project runs on the CPU, got ", z_in.device().str());
  check_budget(k);
  Tensor z = z_in.detach().contiguous();
  const int64_t n = z.size(-1), rows = n == 0 ? 0 : z.numel() / n;
  Tensor p = Tensor::empty(z.shape(), z.dtype());
  auto states = std::make_shared<std::vector<EntryState>>(size_t(z.numel()));
  ops::dispatch_cpu_float(z.dtype(), "sparsek_project", [&]<typename F>() {
    std::vector<double> row(n);
    for (int64_t r = 0; r < rows; ++r) {
      const F* zr = z.data<F>() + r * n;
      for (int64_t i = 0; i < n; ++i) row[i] = double(zr[i]);
      Projection pr = sparsek_tau_search(row.data(), n, k);
      for (int64_t i = 0; i < n; ++i) {
        p.data<F>()[r * n + i] = F(sparsek_mask_value(row[i], pr.tau, pr.state[i]));
        (*states)[r * n + i] = pr.state[i];
      }
    }
  });
  if (autograd::needs_grad({&z_in})) {
    const DType dt = z.dtype();
    autograd::record("sparsek_project", {z_in}, {p}, [states, n, rows, dt](const std::vector<Tensor>& g_in,
                                                                          const std::vector<bool>&) {
      Tensor g = g_in[0].contiguous();
      Tensor dz = Tensor::zeros(g.shape(), dt);
      ops::dispatch_cpu_float(dt, "sparsek_project_backward", [&]<typename F>() {
        for (int64_t r = 0; r < rows; ++r) {
          const F* gr = g.data<F>() + r * n;
          const EntryState* st = states->data() + r * n;
          double sum = 0;
          int64_t count = 0;
          for (int64_t i = 0; i < n; ++i)
            if (st[i] == EntryState::Fractional) sum += double(gr[i]), ++count;
          if (count == 0) continue;
          const double mean = sum / double(count);
          for (int64_t i = 0; i < n; ++i)
            if (st[i] == EntryState::Fractional) dz.data<F>()[r * n + i] = F(double(gr[i]) - mean);
        }
      });
      return std::vector<Tensor>{dz};
    });
  }
  return p;
}

}  // namespace sk::attention::sparsek
