// The `sparsek` kind of the attention interface (src/attention/sparsek/sparsek_attention.cpp):
// registry and parameters, the module against the pieces composed by hand, fp64 gradchecks of the
// whole module (input and every parameter, per-head and shared scores, both mask modes, rotary),
// the cost model, decode steps through the cache against the full forward, and config errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "attention/attention.h"
#include "attention/sparsek/sparsek_reference.h"
#include "nn/rotary.h"
#include "ops/ops.h"
#include "testing/attention_helpers.h"
#include "testing/gradcheck.h"
#include "testing/test_helpers.h"

using namespace sk;
using sk::attention::AttentionSpec;

namespace {

AttentionSpec sparsek_spec(int64_t k, int64_t window, const std::string& mode, bool shared, double rotary_pct,
                           DType dt = DType::F64) {
  AttentionSpec s = sk::testing::spec_for("sparsek", window, rotary_pct, dt);
  s.attention.k = k;
  s.attention.mask_mode = mode;
  s.attention.shared_selection = shared;
  s.attention.score_slope = 0.01;
  return s;
}

// Every parameter redrawn with O(1) values (the "recent" init has w = 0: scores would not depend
// on x, and the selection would not change with the input).
std::unique_ptr<attention::Attention> make_module(const AttentionSpec& s, uint64_t seed) {
  Rng rng(seed);
  auto a = attention::make_attention(s, rng);
  for (auto& [name, t] : a->named_parameters()) {
    const double sd = name.ends_with("_b") ? 0.1 : (name == "score_w" ? 0.7 : 1.0 / std::sqrt(double(t.size(-1))));
    t.copy_(Tensor::randn(t.shape(), rng, DType::F64, Device::cpu(), 0.0, sd));
  }
  return a;
}

}  // namespace

TEST(SparsekModule, registered_with_named_parameters) {
  std::vector<std::string> kinds = attention::attention_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "sparsek"), kinds.end());
  Rng rng(651);
  auto a = attention::make_attention(sparsek_spec(3, 0, "gate_values", false, 0), rng);
  EXPECT_EQ(a->kind(), "sparsek");
  auto p = a->named_parameters();
  ASSERT_EQ(p.size(), 6u);
  EXPECT_EQ(p[0].first, "qkv_w");
  EXPECT_EQ(p[4].first, "score_w");
  EXPECT_EQ(p[4].second.shape(), (Shape{2, 8}));
  EXPECT_EQ(p[5].first, "score_b");
  for (double x : p[4].second.to_vector()) EXPECT_EQ(x, 0.0);  // score_init "recent"
  for (auto& [n, t] : p) EXPECT_TRUE(t.requires_grad()) << n;
  auto shared = attention::make_attention(sparsek_spec(3, 0, "gate_values", true, 0), rng);
  EXPECT_EQ(shared->named_parameters()[4].second.shape(), (Shape{1, 8}));
}

TEST(SparsekModule, forward_matches_composed_pieces) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared" : "per head");
    AttentionSpec s = sparsek_spec(2, 2, "log_mask", shared, 0.5);
    auto a = make_module(s, 652);
    auto p = a->named_parameters();
    Rng rng(653);
    const int64_t B = 2, T = 9, C = 8;
    Tensor x = Tensor::randn({B, T, C}, rng, DType::F64);
    sk::testing::ComposedHeads h = sk::testing::composed_heads(x, p[0].second, p[1].second, 2);
    Tensor q = nn::rotary(h.q, 2), k = nn::rotary(h.k, 2), v = h.v;
    // u = x w^T + b + c j
    Tensor u = ops::linear(x, p[4].second, p[5].second).transpose(1, 2).contiguous();
    std::vector<double> uv = u.to_vector();
    for (size_t i = 0; i < uv.size(); ++i) uv[i] += 0.01 * double(i % T);
    Tensor o = attention::sparsek::sparsek_attention_reference(
        q, k, v, Tensor::from_vector(uv, u.shape(), DType::F64), {2, 2, attention::sparsek::MaskMode::LogMask});
    Tensor want = ops::linear(o.transpose(1, 2).reshape({B, T, C}), p[2].second, p[3].second);
    EXPECT_LT(sk::testing::max_abs_diff(a->forward(x), want), 1e-13);
  }
}

TEST(Gradcheck, attention_sparsek_module) {
  struct Case {
    int64_t k, w;
    const char* mode;
    bool shared;
    double rot;
  };
  for (const Case& c : {Case{2, 0, "gate_values", false, 0.0}, Case{2, 3, "log_mask", false, 0.5},
                        Case{3, 2, "gate_values", true, 1.0}, Case{1, 1, "log_mask", true, 0.0}}) {
    SCOPED_TRACE(std::string(c.mode) + " k " + std::to_string(c.k) + " w " + std::to_string(c.w) +
                 (c.shared ? " shared" : ""));
    auto a = make_module(sparsek_spec(c.k, c.w, c.mode, c.shared, c.rot), 654);
    sk::testing::expect_module_gradcheck(*a, {2, 7, 8}, 655);
  }
}

TEST(SparsekModule, cost_model) {
  Rng rng(656);
  auto a = attention::make_attention(sparsek_spec(4, 3, "gate_values", false, 0), rng);
  EXPECT_EQ(a->keys_attended(20), attention::sparsek::sparsek_keys_attended(20, 4, 3));
  EXPECT_EQ(a->keys_attended(2), 1 + 2);  // the window only
}

TEST(SparsekModule, decode_steps_match_forward) {
  const std::vector<std::vector<int64_t>> patterns = {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {5, 1, 1, 1, 3}, {11}};
  for (DType dt : {DType::F64, DType::F32})
    for (bool shared : {false, true})
      for (int64_t w : {0, 2}) {
        auto a = make_module(sparsek_spec(3, w, "gate_values", shared, 0.5, dt), 657);
        Rng rng(658);
        Tensor x = Tensor::randn({2, 11, 8}, rng, dt);
        Tensor full = a->forward(x);
        for (const auto& pat : patterns) {
          SCOPED_TRACE(std::string(dtype_name(dt)) + (shared ? " shared" : "") + " w " + std::to_string(w) +
                       " first step " + std::to_string(pat[0]));
          sk::testing::expect_decode_steps_match_forward(*a, x, full, pat, dt == DType::F64 ? 1e-12 : 2e-5);
        }
      }
}

TEST(BadInput, sparsek_module) {
  Rng rng(659);
  AttentionSpec s = sparsek_spec(2, 0, "gate", false, 0);
  EXPECT_NE(sk::testing::error_of([&] { attention::make_attention(s, rng); }).find("attention.mask_mode"),
            std::string::npos);
  s = sparsek_spec(2, 0, "gate_values", false, 0);
  s.attention.score_init = "zeros";
  EXPECT_NE(sk::testing::error_of([&] { attention::make_attention(s, rng); }).find("attention.score_init"),
            std::string::npos);
  s = sparsek_spec(0, 0, "gate_values", false, 0);
  EXPECT_NE(sk::testing::error_of([&] { attention::make_attention(s, rng); }).find("attention.k"), std::string::npos);
  auto a = attention::make_attention(sparsek_spec(2, 0, "gate_values", false, 0), rng);
  auto b = attention::make_attention(sparsek_spec(2, 0, "gate_values", false, 0), rng);
  auto cache = b->new_cache(1, 4);
  EXPECT_NE(sk::testing::error_of([&] { a->forward_step(Tensor::randn({1, 1, 8}, rng, DType::F64), *cache); })
                .find("another attention module"),
            std::string::npos);
}
