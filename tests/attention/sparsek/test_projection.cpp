// The SPARSEK operator (src/attention/sparsek/projection.cpp): the median search against the
// spec's sort-based walk and a bisection on f (three independent evaluations of tau), on random
// inputs with ties, n <= k and flat f; the projection's defining properties; and the fp64
// finite-difference gradcheck of the differentiable op (Gradcheck.sparsek_project).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "attention/sparsek/projection.h"
#include "testing/gradcheck.h"

using namespace sk;
using namespace sk::attention::sparsek;

namespace {

// sup{t : f(t) >= k} by bisection on f(t) = sum clip(z - t, 0, 1) (the largest root).
double tau_bisect(const std::vector<double>& z, int64_t k) {
  auto f = [&](double t) {
    double s = 0;
    for (double x : z) s += std::clamp(x - t, 0.0, 1.0);
    return s;
  };
  double lo = *std::min_element(z.begin(), z.end()) - 1.0, hi = *std::max_element(z.begin(), z.end());
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    (f(mid) >= double(k) ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// Random score vectors of several kinds: continuous, few distinct integers (ties, roots exactly on
// breakpoints), wide spread (flat f between far-apart scores), all equal.
std::vector<double> draw_scores(Rng& rng, int64_t n, int kind) {
  std::vector<double> z(static_cast<size_t>(n));
  for (double& x : z) {
    switch (kind) {
      case 0: x = rng.normal(); break;
      case 1: x = double(rng.below(4)); break;
      case 2: x = 4.0 * rng.normal(); break;
      case 3: x = 0.25 * double(rng.below(6)) - 0.5; break;
      default: x = 1.5; break;
    }
  }
  return z;
}

}  // namespace

TEST(SparsekProjection, search_matches_sorted_walk_and_bisection) {
  Rng rng(601);
  int checked_fractional = 0, checked_flat = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const int kind = trial % 5;
    const int64_t n = 1 + int64_t(rng.below(40));
    const int64_t k = 1 + int64_t(rng.below(uint64_t(n) + 3));  // includes n <= k
    const std::vector<double> z = draw_scores(rng, n, kind);
    SCOPED_TRACE("trial " + std::to_string(trial) + " n " + std::to_string(n) + " k " + std::to_string(k));
    Projection p = sparsek_tau_search(z.data(), n, k);
    const double t_sorted = sparsek_tau_sorted(z.data(), n, k);
    if (n <= k) {
      EXPECT_EQ(p.tau, -std::numeric_limits<double>::infinity());
      EXPECT_EQ(t_sorted, p.tau);
      EXPECT_EQ(p.n_saturated, n);
      for (EntryState s : p.state) EXPECT_EQ(s, EntryState::Saturated);
      continue;
    }
    const double t_bisect = tau_bisect(z, k);
    EXPECT_NEAR(p.tau, t_sorted, 1e-12 * (1 + std::abs(p.tau)));
    EXPECT_NEAR(p.tau, t_bisect, 1e-9 * (1 + std::abs(p.tau)));
    // tau in [z_(k) - 1, z_(k)): every hard top-k entry has p > 0.
    std::vector<double> sorted = z;
    std::sort(sorted.rbegin(), sorted.rend());
    EXPECT_GE(p.tau, sorted[k - 1] - 1.0 - 1e-12);
    EXPECT_LT(p.tau, sorted[k - 1]);
    // p = clip(z - tau) is the projection: in [0, 1], sums to k, states agree with p.
    double sum = 0;
    int64_t n_frac = 0, n_sat = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double pi = sparsek_mask_value(z[i], p.tau, p.state[i]);
      EXPECT_NEAR(pi, std::clamp(z[i] - t_sorted, 0.0, 1.0), 1e-12);
      sum += pi;
      if (p.state[i] == EntryState::Fractional) {
        ++n_frac;
        EXPECT_GT(pi, 0.0);
        EXPECT_LE(pi, 1.0);
      } else if (p.state[i] == EntryState::Saturated) {
        ++n_sat;
        EXPECT_GE(z[i] - 1.0, p.tau - 1e-12);
      } else {
        EXPECT_LE(z[i], p.tau + 1e-12);
      }
    }
    EXPECT_NEAR(sum, double(k), 1e-9);
    EXPECT_EQ(n_frac, p.n_fractional);
    EXPECT_EQ(n_sat, p.n_saturated);
    EXPECT_GT(p.n_fractional, 0);
    if (n_frac > 1) ++checked_fractional;
    if (sorted[k - 1] - sorted[k] > 1.0) ++checked_flat;
  }
  // The draws really exercised both regimes.
  EXPECT_GT(checked_fractional, 100);
  EXPECT_GT(checked_flat, 20);
}

TEST(SparsekProjection, flat_f_takes_the_largest_root) {
  // k = 2: the two best are saturated, z_(3) = 0 is dead; f = 2 on [0, 2], tau = z_(2) - 1 = 2.
  const std::vector<double> z = {5.0, 0.0, 3.0};
  Projection p = sparsek_tau_search(z.data(), 3, 2);
  EXPECT_DOUBLE_EQ(p.tau, 2.0);
  EXPECT_DOUBLE_EQ(sparsek_tau_sorted(z.data(), 3, 2), 2.0);
  EXPECT_EQ(sparsek_mask_value(z[0], p.tau, p.state[0]), 1.0);
  EXPECT_EQ(sparsek_mask_value(z[1], p.tau, p.state[1]), 0.0);
  EXPECT_EQ(sparsek_mask_value(z[2], p.tau, p.state[2]), 1.0);
  // All equal: every entry fractional with p = k / n.
  const std::vector<double> e(6, 0.7);
  Projection pe = sparsek_tau_search(e.data(), 6, 4);
  EXPECT_EQ(pe.n_fractional, 6);
  EXPECT_NEAR(sparsek_mask_value(0.7, pe.tau, pe.state[0]), 4.0 / 6.0, 1e-15);
}

TEST(Gradcheck, sparsek_project) {
  Rng rng(602);
  for (int64_t k : {1, 2, 4, 9}) {
    SCOPED_TRACE("k " + std::to_string(k));
    Tensor z = sk::testing::rand_leaf({3, 7}, rng);
    EXPECT_GRADCHECK([k](const std::vector<Tensor>& in) { return sparsek_project(in[0], k); }, {z});
  }
  // Spread scores: flat f in some rows, saturated and dead entries get no gradient.
  Tensor wide = sk::testing::rand_leaf({4, 6}, rng, 3.0);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return sparsek_project(in[0], 2); }, {wide});
}

TEST(SparsekProjection, gradient_is_centered_on_the_fractional_set) {
  // z = (0.9, 0.5, 0.1, -3): k = 1 gives tau = 0.2 with S = {0, 1}; g = (1, 2, 3, 4):
  // dz = (1 - 1.5, 2 - 1.5, 0, 0).
  Tensor z = Tensor::from_vector({0.9, 0.5, 0.1, -3.0}, {4}, DType::F64);
  z.set_requires_grad(true);
  Tensor p = sparsek_project(z, 1);
  std::vector<double> pv = p.to_vector();
  EXPECT_NEAR(pv[0], 0.7, 1e-15);
  EXPECT_NEAR(pv[1], 0.3, 1e-15);
  EXPECT_EQ(pv[2], 0.0);
  EXPECT_EQ(pv[3], 0.0);
  p.backward(Tensor::from_vector({1, 2, 3, 4}, {4}, DType::F64));
  std::vector<double> g = z.grad().to_vector();
  EXPECT_NEAR(g[0], -0.5, 1e-15);
  EXPECT_NEAR(g[1], 0.5, 1e-15);
  EXPECT_EQ(g[2], 0.0);
  EXPECT_EQ(g[3], 0.0);
}

TEST(SparsekProjection, f32_matches_f64) {
  Rng rng(603);
  Tensor z64 = Tensor::randn({5, 33}, rng, DType::F64);
  std::vector<double> a = sparsek_project(z64, 8).to_vector(), b = sparsek_project(z64.to(DType::F32), 8).to_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6);
}

TEST(BadInput, sparsek_project) {
  EXPECT_THROW(sparsek_project(Tensor::zeros({3}), 0), Error);
  EXPECT_THROW(sparsek_project(Tensor::from_ints({1, 2}, {2}), 1), Error);
}
