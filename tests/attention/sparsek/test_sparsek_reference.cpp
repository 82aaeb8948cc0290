// SparseK attention CPU reference (src/attention/sparsek/sparsek_reference.cpp): fp64 gradchecks
// of q, k, v and the scores u for both mask modes, w in {0, 3} and shared selection (u (B, 1, T));
// the forward against a dense formula built from the brute-force selection; k >= T and w >= T
// reduce to full / sliding-window attention (attention/reference.h); f32 agrees with f64.
#include <gtest/gtest.h>

#include <cmath>

#include "attention/reference.h"
#include "attention/sparsek/sparsek_reference.h"
#include "testing/gradcheck.h"

using namespace sk;
using namespace sk::attention::sparsek;
using sk::testing::rand_leaf;

namespace {

sk::testing::TensorFn attn(SparsekParams p) {
  return [p](const std::vector<Tensor>& in) { return sparsek_attention_reference(in[0], in[1], in[2], in[3], p); };
}

// Counts (query, key) pairs of the first score row where the key is fractional, and where it is
// fractional but not selected (it still moves tau_i, so its score gets a gradient).
std::pair<int, int> fractional_pairs(const Tensor& u, SparsekParams p) {
  const int64_t T = u.size(2);
  std::vector<double> row = u.slice(1, 0, 1).slice(0, 0, 1).to_vector();
  CausalSelection s = causal_selection(row.data(), T, p.k, p.window);
  int frac = 0, frac_unselected = 0;
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j <= i - p.window; ++j) {
      frac += s.fractional(i, j);
      frac_unselected += s.fractional(i, j) && !s.selected(i, j);
    }
  return {frac, frac_unselected};
}

}  // namespace

TEST(Gradcheck, attention_sparsek) {
  Rng rng(621);
  for (MaskMode mode : {MaskMode::GateValues, MaskMode::LogMask}) {
    for (int64_t w : {0, 3}) {
      SparsekParams p{3, w, mode};
      SCOPED_TRACE(std::string(mask_mode_name(mode)) + " w " + std::to_string(w));
      Tensor q = rand_leaf({2, 2, 9, 3}, rng), k = rand_leaf({2, 2, 9, 3}, rng), v = rand_leaf({2, 2, 9, 3}, rng);
      Tensor u = rand_leaf({2, 2, 9}, rng, 0.7);
      auto [frac, frac_unselected] = fractional_pairs(u, p);
      EXPECT_GT(frac, 5) << "the draw must exercise the gradient through tau";
      EXPECT_GT(frac_unselected, 0) << "the draw must have fractional keys outside Sel";
      EXPECT_GRADCHECK(attn(p), {q, k, v, u});
    }
  }
}

TEST(Gradcheck, attention_sparsek_shared_selection) {
  Rng rng(622);
  for (MaskMode mode : {MaskMode::GateValues, MaskMode::LogMask}) {
    SparsekParams p{2, 2, mode};
    SCOPED_TRACE(mask_mode_name(mode));
    Tensor q = rand_leaf({1, 3, 8, 2}, rng), k = rand_leaf({1, 3, 8, 2}, rng), v = rand_leaf({1, 3, 8, 2}, rng);
    Tensor u = rand_leaf({1, 1, 8}, rng, 0.7);  // one score row for all three heads
    EXPECT_GRADCHECK(attn(p), {q, k, v, u});
  }
}

TEST(SparsekAttention, forward_matches_dense_formula_on_brute_force_selection) {
  Rng rng(623);
  const int64_t B = 1, H = 2, T = 13, D = 4;
  Tensor q = Tensor::randn({B, H, T, D}, rng, DType::F64), k = Tensor::randn({B, H, T, D}, rng, DType::F64),
         v = Tensor::randn({B, H, T, D}, rng, DType::F64), u = Tensor::randn({B, H, T}, rng, DType::F64);
  for (MaskMode mode : {MaskMode::GateValues, MaskMode::LogMask}) {
    for (int64_t w : {0, 1, 4}) {
      SparsekParams p{4, w, mode};
      SCOPED_TRACE(std::string(mask_mode_name(mode)) + " w " + std::to_string(w));
      SparsekForward f = sparsek_attention_forward(q, k, v, u, p);
      std::vector<double> out = f.out.to_vector(), lse = f.lse.to_vector();
      std::vector<double> Q = q.to_vector(), K = k.to_vector(), V = v.to_vector(), U = u.to_vector();
      for (int64_t h = 0; h < H; ++h) {
        const std::vector<double> uh(U.begin() + h * T, U.begin() + (h + 1) * T);
        DenseSelection ref = causal_selection_brute(uh.data(), T, p.k, w);
        for (int64_t i = 0; i < T; ++i) {
          // weight[j]: 1 in the window, m_ij on Sel_i, 0 (not visible) elsewhere.
          std::vector<double> weight(T, 0.0), a(T);
          for (int64_t j = 0; j <= i; ++j) {
            if (w > 0 && j > i - w) weight[j] = 1.0;
            else if (ref.sel[i * T + j]) weight[j] = std::clamp(uh[j] - ref.tau[i], 0.0, 1.0);
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += Q[(h * T + i) * D + d] * K[(h * T + j) * D + d];
            a[j] = dot / std::sqrt(double(D)) + (mode == MaskMode::LogMask ? std::log(weight[j]) : 0.0);
          }
          double z = 0;
          for (int64_t j = 0; j <= i; ++j) z += weight[j] > 0 ? std::exp(a[j]) : 0.0;
          EXPECT_NEAR(lse[h * T + i], std::log(z), 1e-12) << "query " << i;
          for (int64_t d = 0; d < D; ++d) {
            double o = 0;
            for (int64_t j = 0; j <= i; ++j)
              if (weight[j] > 0)
                o += std::exp(a[j]) / z * (mode == MaskMode::GateValues ? weight[j] : 1.0) * V[(h * T + j) * D + d];
            EXPECT_NEAR(out[(h * T + i) * D + d], o, 1e-12) << "query " << i << " dim " << d;
          }
        }
      }
    }
  }
}

TEST(SparsekAttention, large_k_or_window_reduce_to_full_and_sliding_window) {
  Rng rng(624);
  const int64_t T = 11;
  Tensor q = Tensor::randn({2, 2, T, 3}, rng, DType::F64), k = Tensor::randn({2, 2, T, 3}, rng, DType::F64),
         v = Tensor::randn({2, 2, T, 3}, rng, DType::F64), u = Tensor::randn({2, 2, T}, rng, DType::F64);
  auto near = [](const Tensor& a, const Tensor& b) {
    std::vector<double> x = a.to_vector(), y = b.to_vector();
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i], 1e-12) << "at " << i;
  };
  const Tensor full = attention::attention_reference(q, k, v, attention::CausalWindow{0});
  for (MaskMode mode : {MaskMode::GateValues, MaskMode::LogMask}) {
    SCOPED_TRACE(mask_mode_name(mode));
    near(sparsek_attention_reference(q, k, v, u, {T, 0, mode}), full);      // k >= T: every key, m = 1
    near(sparsek_attention_reference(q, k, v, u, {1, T, mode}), full);      // w >= T: window covers all
    near(sparsek_attention_reference(q, k, v, u, {1, T + 5, mode}), full);
    // k >= every prefix with a window: window plus saturated prefix = full attention.
    near(sparsek_attention_reference(q, k, v, u, {T, 4, mode}), full);
  }
}

TEST(SparsekAttention, f32_matches_f64) {
  Rng rng(625);
  Tensor q = Tensor::randn({1, 2, 40, 8}, rng, DType::F64), k = Tensor::randn({1, 2, 40, 8}, rng, DType::F64),
         v = Tensor::randn({1, 2, 40, 8}, rng, DType::F64), u = Tensor::randn({1, 2, 40}, rng, DType::F64);
  for (MaskMode mode : {MaskMode::GateValues, MaskMode::LogMask}) {
    SparsekParams p{6, 5, mode};
    SparsekForward f64 = sparsek_attention_forward(q, k, v, u, p);
    SparsekForward f32 = sparsek_attention_forward(q.to(DType::F32), k.to(DType::F32), v.to(DType::F32),
                                                   u.to(DType::F32), p);
    EXPECT_EQ(f32.out.dtype(), DType::F32);
    EXPECT_EQ(f32.lse.dtype(), DType::F32);
    std::vector<double> a = f64.out.to_vector(), b = f32.out.to_vector();
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 2e-5) << mask_mode_name(mode) << " at " << i;
    std::vector<double> la = f64.lse.to_vector(), lb = f32.lse.to_vector();
    for (size_t i = 0; i < la.size(); ++i) ASSERT_NEAR(la[i], lb[i], 2e-5) << mask_mode_name(mode) << " at " << i;
  }
}

TEST(SparsekAttention, keys_attended_counts_the_visible_keys) {
  Rng rng(626);
  for (int64_t T : {1, 5, 12})
    for (int64_t w : {0, 1, 3, 20})
      for (int64_t kk : {1, 4, 20}) {
        std::vector<double> u(static_cast<size_t>(T));
        for (double& x : u) x = rng.normal();
        CausalSelection s = causal_selection(u.data(), T, kk, w);
        int64_t count = 0;
        for (int64_t i = 0; i < T; ++i) count += std::min(w, i + 1) + int64_t(s.selected_keys(i).size());
        EXPECT_EQ(sparsek_keys_attended(T, kk, w), count) << "T " << T << " w " << w << " k " << kk;
      }
  // T w - w (w - 1) / 2 window keys plus k (T - w) - k (k - 1) / 2 selected keys.
  EXPECT_EQ(sparsek_keys_attended(65536, 512, 512), 65536 * 512 - 512 * 511 / 2 + 512 * (65536 - 512) - 512 * 511 / 2);
}

TEST(BadInput, sparsek_attention) {
  Tensor q = Tensor::zeros({1, 2, 4, 8});
  EXPECT_THROW(sparsek_attention_reference(q, q, q, Tensor::zeros({1, 3, 4}), {2, 0}), Error);
  EXPECT_THROW(sparsek_attention_reference(q, q, q, Tensor::zeros({1, 2, 5}), {2, 0}), Error);
  EXPECT_THROW(sparsek_attention_reference(q, q, q, Tensor::zeros({1, 2, 4}), {0, 0}), Error);
  EXPECT_THROW(sparsek_attention_reference(q, q, q, Tensor::zeros({1, 2, 4}), {2, -1}), Error);
  EXPECT_THROW(parse_mask_mode("gate"), Error);
}
