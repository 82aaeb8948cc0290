// The `lsh` module (src/attention/lsh/lsh_attention.h): registry and config errors, parameter names,
// fp64 gradcheck through the interface with fixed rotations (input and every weight), seeded
// rotations (reproducible, per step and layer, fixed for evaluation), the cost model, and decode
// (each new token's output = the last position of a forward over its prefix, same rotations).
#include <gtest/gtest.h>

#include <algorithm>

#include "attention/lsh/lsh_attention.h"
#include "testing/attention_helpers.h"
#include "testing/test_helpers.h"

using namespace sk;
using attention::AttentionSpec;
using attention::LshAttention;

namespace {

AttentionSpec lsh_spec(int64_t n_hashes, int64_t n_buckets, int64_t chunk, DType dt = DType::F64) {
  AttentionSpec s = sk::testing::spec_for("lsh", 0, 0.0, dt);
  s.attention.n_hashes = n_hashes;
  s.attention.n_buckets = n_buckets;
  s.attention.chunk = chunk;
  return s;
}

std::unique_ptr<attention::Attention> make(const AttentionSpec& s, uint64_t seed) {
  Rng rng(seed);
  auto a = attention::make_attention(s, rng);
  for (auto& [n, t] : a->named_parameters())  // O(1) weights: the attention pattern matters
    t.copy_(Tensor::randn(t.shape(), rng, DType::F64, Device::cpu(), 0.0, n == "proj_b" ? 0.1 : 0.5));
  return a;
}

}  // namespace

TEST(LshModule, registry_parameters_and_config_errors) {
  std::vector<std::string> kinds = attention::attention_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "lsh"), kinds.end());
  Rng rng(1);
  auto a = attention::make_attention(lsh_spec(2, 0, 4), rng);
  EXPECT_EQ(a->kind(), "lsh");
  auto p = a->named_parameters();
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].first, "qk_w");
  EXPECT_EQ(p[0].second.shape(), (Shape{8, 8}));
  EXPECT_EQ(p[1].first, "v_w");
  EXPECT_EQ(p[2].first, "proj_w");
  EXPECT_EQ(p[3].first, "proj_b");
  auto err = [&](AttentionSpec s) { return sk::testing::error_of([&] { attention::make_attention(s, rng); }); };
  EXPECT_NE(err(lsh_spec(2, 3, 4)).find("attention.n_buckets"), std::string::npos);
  EXPECT_NE(err(lsh_spec(0, 0, 4)).find("attention.n_hashes"), std::string::npos);
  EXPECT_NE(err(lsh_spec(2, 0, 0)).find("attention.chunk"), std::string::npos);
  AttentionSpec rot = lsh_spec(2, 0, 4);
  rot.rotary_pct = 0.5;
  EXPECT_NE(err(rot).find("rotary"), std::string::npos);
}

TEST(Gradcheck, lsh_module_through_interface) {
  for (int64_t T : {10, 4}) {  // hashed (T > chunk, not a multiple) and plain (T <= chunk)
    auto a = make(lsh_spec(2, 4, 4), 2);
    Rng rng(3);
    static_cast<LshAttention&>(*a).set_rotations(Tensor::randn({2, 4, 2, 2}, rng, DType::F64));
    sk::testing::expect_module_gradcheck(*a, {2, T, 8}, 4);
  }
}

TEST(LshModule, rotations_are_seeded_per_step_and_layer) {
  auto a = make(lsh_spec(2, 0, 4), 5), b = make(lsh_spec(2, 0, 4), 5);
  auto& la = static_cast<LshAttention&>(*a);
  auto& lb = static_cast<LshAttention&>(*b);
  EXPECT_EQ(la.rotations_for(16).shape(), (Shape{2, 4, 2, 4}));  // default NB for T 16, chunk 4: 8
  EXPECT_EQ(sk::testing::max_abs_diff(la.rotations_for(16), lb.rotations_for(16)), 0.0);
  const Tensor eval = la.rotations_for(16);
  la.set_step(7);
  const Tensor s7 = la.rotations_for(16);
  EXPECT_GT(sk::testing::max_abs_diff(s7, eval), 0.1);
  EXPECT_EQ(sk::testing::max_abs_diff(la.rotations_for(16), s7), 0.0);  // same step: same draw
  la.set_step(-1);
  EXPECT_EQ(sk::testing::max_abs_diff(la.rotations_for(16), eval), 0.0);
  AttentionSpec l1 = lsh_spec(2, 0, 4);
  l1.layer = 1;
  auto c = make(l1, 5);
  EXPECT_GT(sk::testing::max_abs_diff(static_cast<LshAttention&>(*c).rotations_for(16), eval), 0.1);
}

TEST(LshModule, decode_equals_last_position_of_the_prefix_forward) {
  for (int64_t nb : {0, 4})  // default NB changes with the prefix length; a fixed NB does not
    for (DType dt : {DType::F64, DType::F32}) {
      SCOPED_TRACE("n_buckets " + std::to_string(nb) + " " + dtype_name(dt));
      Rng prng(6);
      auto a = attention::make_attention(lsh_spec(2, nb, 4, dt), prng);
      Rng rng(7);
      const int64_t T = 14;
      Tensor x = Tensor::randn({2, T, 8}, rng, dt);
      auto cache = a->new_cache(2, T);
      int64_t t = 0;
      for (int64_t n : {1, 3, 1, 5, 4}) {
        Tensor y = a->forward_step(x.slice(1, t, t + n), *cache);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t p = t + i;
          Tensor full = a->forward(x.slice(1, 0, p + 1).contiguous());
          EXPECT_LT(sk::testing::max_abs_diff(y.slice(1, i, i + 1), full.slice(1, p, p + 1)),
                    dt == DType::F64 ? 1e-12 : 1e-5)
              << "position " << p;
        }
        t += n;
      }
      EXPECT_EQ(cache->positions(), T);
    }
}

TEST(LshModule, cost_model) {
  auto a = make(lsh_spec(2, 0, 4), 8);
  EXPECT_EQ(a->keys_attended(4), 16);
  EXPECT_EQ(a->keys_attended(16), 8 * 4 * 8);  // 32 entries in 8 chunks of 4, each sees 8 keys
}
