// The SPARSEK operator (../shared/docs/attention-spec.md section 4.2): the Euclidean projection of
// a score vector z (n) onto {p : 0 <= p_i <= 1, sum_i p_i = k},
//     p_i = clip(z_i - tau, 0, 1),  tau solving f(tau) = sum_i clip(z_i - tau, 0, 1) = k.
// Two independent evaluations of tau, plus the differentiable op:
//   sparsek_tau_search:  the operator's own algorithm: a median search over the 2n breakpoints
//                        {z_i, z_i - 1} (std::nth_element, O(n) expected per halving, O(n log n)
//                        worst case) down to one segment, then the closed form on that segment's
//                        fractional set S and saturated count U: tau = (sum_S z + U - k) / |S|.
//   sparsek_tau_sorted:  the sort-based reference of the spec: sort the breakpoints descending and
//                        walk tau down, accumulating f with the slope of each open segment.
//   sparsek_project:     Tensor op z (..., n) -> p (..., n) over the last dim, with the exact
//                        backward dz_j = [j in S] (g_j - mean_{i in S} g_i).
// Conventions (documented in docs/SPARSEK.md):
//   - k is an integer, 1 <= k. If n <= k every p_i = 1 and tau = -infinity.
//   - f is flat (S empty) between z_(k+1) and z_(k) - 1 when the k-th and (k+1)-th largest scores
//     are more than 1 apart; tau is then the LARGEST root, z_(k) - 1, so tau always lies in
//     [z_(k) - 1, z_(k)) as the spec asks, and the root is unique otherwise.
//   - Each entry's state (dead p = 0, fractional, saturated p = 1) comes from comparisons with the
//     segment's breakpoints, never from p > 0 (rounding). On the segment [lo, hi) that holds tau:
//     dead z_i <= lo, fractional z_i - 1 <= lo < hi <= z_i, saturated z_i - 1 >= hi.
// Tests: tests/attention/sparsek/test_projection.cpp (search vs sorted vs brute-force bisection on
// random inputs with ties and n <= k; fp64 gradcheck Gradcheck.sparsek_project).
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace sk::attention::sparsek {

enum class EntryState : uint8_t { Dead = 0, Fractional = 1, Saturated = 2 };

struct Projection {
  double tau = 0;                  // -infinity when n <= k
  std::vector<EntryState> state;   // (n)
  int64_t n_fractional = 0;        // |S|
  int64_t n_saturated = 0;         // U
};

// The operator's algorithm (median search over breakpoints). z: n scores, computed in double.
Projection sparsek_tau_search(const double* z, int64_t n, int64_t k);
// The spec's sort-based reference walk. Returns tau only (same convention).
double sparsek_tau_sorted(const double* z, int64_t n, int64_t k);
// p_i = clip(z_i - tau, 0, 1) with exact 0 / 1 for dead / saturated entries.
double sparsek_mask_value(double z, double tau, EntryState s);

// Differentiable SPARSEK over the last dim: z (..., n) f32/f64 CPU -> p (..., n), same dtype.
// Every row uses the same budget k >= 1.
Tensor sparsek_project(const Tensor& z, int64_t k);

}  // namespace sk::attention::sparsek
