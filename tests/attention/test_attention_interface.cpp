// The attention interface (src/attention/attention.h) for the full and sliding_window kinds: the
// registry, fp64 gradchecks of whole modules (input and every parameter, with and without rotary),
// the module against the reference core composed by hand, the cost model against a brute-force
// count, and decode steps through the KV cache (token by token, in chunks, ring wrap-around)
// against the full forward. CPU only (the model-level GPU decode test is in tests/model/).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "attention/attention.h"
#include "attention/reference.h"
#include "nn/rotary.h"
#include "ops/ops.h"
#include "testing/attention_helpers.h"
#include "testing/gradcheck.h"
#include "testing/test_helpers.h"

using namespace sk;
using sk::attention::AttentionSpec;

namespace {

using sk::testing::spec_for;

// A module with random (non-zero) biases too, so that every parameter matters.
std::unique_ptr<attention::Attention> make_module(const AttentionSpec& s, uint64_t seed) {
  Rng rng(seed);
  auto a = attention::make_attention(s, rng);
  for (auto& [name, t] : a->named_parameters())
    if (name.ends_with("_b")) t.copy_(Tensor::randn(t.shape(), rng, DType::F64, Device::cpu(), 0.0, 0.1));
  return a;
}

struct KindCase {
  std::string kind;
  int64_t window;
};
const std::vector<KindCase> kKinds = {{"full", 0}, {"sliding_window", 1}, {"sliding_window", 3},
                                      {"sliding_window", 50}};

}  // namespace

TEST(AttentionRegistry, builtin_kinds_unknown_kind_and_registration) {
  std::vector<std::string> kinds = attention::attention_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "full"), kinds.end());
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "sliding_window"), kinds.end());
  Rng rng(1);
  const std::string err = sk::testing::error_of([&] { attention::make_attention(spec_for("nope", 0, 0), rng); });
  EXPECT_NE(err.find("attention.kind \"nope\""), std::string::npos) << err;
  EXPECT_NE(err.find("sliding_window"), std::string::npos) << err;  // lists the known kinds
  EXPECT_NE(sk::testing::error_of([&] { attention::make_attention(spec_for("sliding_window", 0, 0), rng); })
                .find("attention.window"),
            std::string::npos);
  // A kind added at run time is found by name; a taken name is refused.
  attention::register_attention_kind("test_full_alias", [](const AttentionSpec& s, Rng& r) {
    AttentionSpec t = s;
    t.attention.kind = "full";
    return attention::make_attention(t, r);
  });
  EXPECT_EQ(attention::make_attention(spec_for("test_full_alias", 0, 0), rng)->kind(), "full");
  EXPECT_THROW(attention::register_attention_kind("full", [](const AttentionSpec& s, Rng& r) {
    return attention::make_attention(s, r);
  }), Error);
}

TEST(AttentionInterface, parameters_named_as_the_model_expects) {
  Rng rng(2);
  auto a = attention::make_attention(spec_for("full", 0, 0), rng);
  auto p = a->named_parameters();
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].first, "qkv_w");
  EXPECT_EQ(p[0].second.shape(), (Shape{24, 8}));
  EXPECT_EQ(p[1].first, "qkv_b");
  EXPECT_EQ(p[2].first, "proj_w");
  EXPECT_EQ(p[2].second.shape(), (Shape{8, 8}));
  EXPECT_EQ(p[3].first, "proj_b");
  for (auto& [n, t] : p) EXPECT_TRUE(t.requires_grad()) << n;
  AttentionSpec nb = spec_for("full", 0, 0);
  nb.bias = false;
  EXPECT_EQ(attention::make_attention(nb, rng)->named_parameters().size(), 2u);
}

// The module = output projection of the reference core over the [3, H, D] heads of the fused
// projection, with rotary on q and k: composed here from the public pieces.
TEST(AttentionInterface, forward_matches_composed_reference) {
  for (const KindCase& kc : kKinds)
    for (double rot : {0.0, 0.5}) {
      SCOPED_TRACE(kc.kind + " window " + std::to_string(kc.window) + " rotary " + std::to_string(rot));
      AttentionSpec s = spec_for(kc.kind, kc.window, rot);
      auto a = make_module(s, 3);
      auto p = a->named_parameters();
      Rng rng(4);
      const int64_t B = 2, T = 6, C = 8;
      Tensor x = Tensor::randn({B, T, C}, rng, DType::F64);
      sk::testing::ComposedHeads h = sk::testing::composed_heads(x, p[0].second, p[1].second, 2);
      Tensor q = h.q, k = h.k, v = h.v;
      if (rot > 0) {
        q = nn::rotary(q, 2);
        k = nn::rotary(k, 2);
      }
      Tensor o = attention::attention_reference(q, k, v, attention::CausalWindow{kc.window});
      Tensor want = ops::linear(o.transpose(1, 2).reshape({B, T, C}), p[2].second, p[3].second);
      EXPECT_LT(sk::testing::max_abs_diff(a->forward(x), want), 1e-14);
    }
}

TEST(Gradcheck, attention_module_through_interface) {
  for (const KindCase& kc : kKinds)
    for (double rot : {0.0, 0.5, 1.0}) {
      SCOPED_TRACE(kc.kind + " window " + std::to_string(kc.window) + " rotary " + std::to_string(rot));
      auto a = make_module(spec_for(kc.kind, kc.window, rot), 5);
      sk::testing::expect_module_gradcheck(*a, {2, 5, 8}, 6);
    }
}

TEST(AttentionInterface, cost_model_counts_visible_keys) {
  Rng rng(7);
  for (int64_t w : {0, 1, 2, 5, 16, 100})
    for (int64_t T : {1, 2, 7, 16, 33}) {
      auto a = attention::make_attention(spec_for(w == 0 ? "full" : "sliding_window", w, 0), rng);
      int64_t want = 0;
      for (int64_t i = 0; i < T; ++i) want += i - attention::CausalWindow{w}.first_key(i) + 1;
      EXPECT_EQ(a->keys_attended(T), want) << "window " << w << " T " << T;
    }
  // FlashAttention's convention for full causal attention: 4 B H T^2 D / 2 (up to the diagonal).
  EXPECT_NEAR(attention::attention_forward_flops(1024 * 1025 / 2, 8, 12, 64), 4.0 * 8 * 12 * 1024.0 * 1024 * 64 / 2,
              4.0 * 8 * 12 * 1024 * 64 / 2 + 1);
}

// Decoding in steps of the given sizes (summing to T) gives the full forward's outputs.
TEST(AttentionInterface, decode_steps_match_forward) {
  const std::vector<std::vector<int64_t>> patterns = {{1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 1, 1, 1}, {2, 3, 1, 3}, {9}};
  for (DType dt : {DType::F64, DType::F32})
    for (const KindCase& kc : kKinds)
      for (double rot : {0.0, 0.5}) {
        auto a = make_module(spec_for(kc.kind, kc.window, rot, dt), 8);
        Rng rng(9);
        Tensor x = Tensor::randn({2, 9, 8}, rng, dt);
        Tensor full = a->forward(x);
        for (const auto& pat : patterns) {
          std::string label = kc.kind + " w" + std::to_string(kc.window) + " rot" + std::to_string(rot) + " " +
                              dtype_name(dt) + " steps";
          for (int64_t n : pat) label += " " + std::to_string(n);
          SCOPED_TRACE(label);
          sk::testing::expect_decode_steps_match_forward(*a, x, full, pat, dt == DType::F64 ? 1e-14 : 2e-6);
        }
      }
}

TEST(BadInput, attention_decode_cache) {
  Rng rng(10);
  auto full = attention::make_attention(spec_for("full", 0, 0), rng);
  auto window = attention::make_attention(spec_for("sliding_window", 2, 0), rng);
  Tensor x = Tensor::randn({1, 3, 8}, rng, DType::F64);
  auto wc = window->new_cache(1, 3);
  EXPECT_NE(sk::testing::error_of([&] { full->forward_step(x, *wc); }).find("another attention module"), std::string::npos);
  auto fc = full->new_cache(1, 4);
  full->forward_step(x, *fc);
  EXPECT_NE(sk::testing::error_of([&] { full->forward_step(x.slice(1, 0, 2), *fc); }).find("holds 4 positions"),
            std::string::npos);
  EXPECT_THROW(full->forward_step(Tensor::randn({2, 1, 8}, rng, DType::F64), *fc), Error);  // batch 2 into batch 1
  // A window's ring never fills: 3 + 3 + 3 positions through a cache made for 3.
  for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(window->forward_step(x, *wc));
}
