// A Gpt with attention.kind = lsh (src/attention/lsh/): a tiny model trains on the CPU with falling
// loss (rotations redrawn every step through Gpt::set_step, as the trainer does), and a one-layer
// model's token-by-token decode equals the last position of forwards over each prefix (with more
// layers the earlier positions' hidden states in a forward depend on later positions' buckets:
// docs/LSH.md, the chunk-boundary caveat).
#include <gtest/gtest.h>

#include <cstdio>

#include "model/tiny_models.h"
#include "optim/adamw.h"

using namespace sk;

namespace {

config::AttentionConfig lsh_attention(int64_t n_hashes, int64_t chunk) {
  config::AttentionConfig a = sk::testing::attention_kind("lsh");
  a.n_hashes = n_hashes;
  a.chunk = chunk;
  return a;
}

}  // namespace

TEST(GptLsh, tiny_model_trains_on_cpu) {
  // Next token = the token 6 positions back.
  config::ModelConfig mc = sk::testing::tiny_gpt2(16, 2);
  mc.block_size = 24;
  Rng rng(764);
  model::Gpt gpt(mc, lsh_attention(2, 8), DType::F32, Device::cpu(), rng);
  optim::AdamWConfig oc;
  oc.lr = 1e-2;
  oc.weight_decay = 0.0;
  optim::AdamW opt(oc);
  for (auto& [name, p] : gpt.named_parameters()) opt.add_param(p);
  const int64_t B = 8, T = 24;
  const auto [idx, targets] = sk::testing::lag_copy_batch(mc.vocab_size, B, T, 6, 765);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    gpt.set_step(step);
    opt.zero_grad();
    Tensor loss = gpt.loss(idx, targets);
    loss.backward();
    if (step == 0) first = loss.item();
    last = loss.item();
    opt.step();
  }
  std::printf("[ lsh train ] loss %.4f -> %.4f in 60 steps\n", first, last);
  EXPECT_LT(last, 0.6 * first) << "loss " << first << " -> " << last;
}

TEST(GptLsh, one_layer_decode_equals_prefix_forwards) {
  config::ModelConfig mc = sk::testing::tiny_gpt2();
  mc.n_layer = 1;
  Rng rng(766);
  model::Gpt gpt(mc, lsh_attention(2, 4), DType::F64, Device::cpu(), rng);
  sk::testing::randomize(gpt, 767);
  Rng trng(768);
  const int64_t T = 14, Vp = mc.padded_vocab();
  Tensor idx = Tensor::randint({2, T}, trng, mc.vocab_size, DType::I32);
  model::KvCache cache = gpt.new_cache(2, T);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> step = gpt.forward_step(idx.slice(1, t, t + 1), cache).to_vector();
    std::vector<double> full = gpt.forward(idx.slice(1, 0, t + 1).contiguous()).to_vector();
    double err = 0;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t j = 0; j < Vp; ++j)
        err = std::max(err, std::abs(step[b * Vp + j] - full[(b * (t + 1) + t) * Vp + j]));
    EXPECT_LT(err, 1e-10) << "position " << t;
  }
}
