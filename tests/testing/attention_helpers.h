// Helpers shared by the attention-module tests (tests/attention/test_attention_interface.cpp and
// tests/attention/sparsek/test_sparsek_module.cpp): a small module spec, a module gradcheck, q/k/v
// heads composed by hand, the largest element difference, and decoding through a module's cache in given step sizes against its full forward.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "ops/ops.h"
#include "testing/gradcheck.h"
#include "tensor/tensor.h"

namespace sk::testing {

// A small module spec: C = 8, H = 2 (D = 4), two layers, CPU.
inline attention::AttentionSpec spec_for(const std::string& kind, int64_t window, double rotary_pct,
                                         DType dt = DType::F64) {
  attention::AttentionSpec s;
  s.attention.kind = kind;
  s.attention.window = window;
  s.n_embd = 8;
  s.n_head = 2;
  s.rotary_pct = rotary_pct;
  s.n_layer = 2;
  s.dtype = dt;
  return s;
}

// The q, k, v heads (B, H, T, D) of x (B, T, C) through a fused projection laid out [3, H, D],
// composed from generic ops (what QkvProjection must compute, before rotary).
struct ComposedHeads {
  Tensor q, k, v;
};
inline ComposedHeads composed_heads(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, int64_t H) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2) / H;
  Tensor qkv = ops::linear(x, qkv_w, qkv_b).view({B, T, 3, H, D});
  auto head = [&](int64_t i) { return qkv.slice(2, i, i + 1).reshape({B, T, H, D}).transpose(1, 2).contiguous(); };
  return {head(0), head(1), head(2)};
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// fp64 gradcheck of a module's forward with respect to a random input x of x_shape and every
// parameter (the parameters must be f64 leaves).
inline void expect_module_gradcheck(const attention::Attention& a, const Shape& x_shape, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> inputs{rand_leaf(x_shape, rng)};
  for (auto& [n, t] : a.named_parameters()) inputs.push_back(t);
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return a.forward(in[0]); }, inputs);
}

// Runs x (B, T, C) through a fresh cache of `a` in steps of the given sizes (summing to T) and
// expects every step's output (no autograd) within tol of full (= a.forward(x)) at those positions.
inline void expect_decode_steps_match_forward(const attention::Attention& a, const Tensor& x, const Tensor& full,
                                              const std::vector<int64_t>& steps, double tol) {
  auto cache = a.new_cache(x.size(0), x.size(1));
  int64_t t = 0;
  for (int64_t n : steps) {
    Tensor y = a.forward_step(x.slice(1, t, t + n), *cache);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_LT(max_abs_diff(y, full.slice(1, t, t + n)), tol) << "step at position " << t << " of " << n;
    t += n;
    EXPECT_EQ(cache->positions(), t);
  }
}

}  // namespace sk::testing
