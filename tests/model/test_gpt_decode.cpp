// Decoding with the KV cache (Gpt::new_cache / forward_step) against the full forward, and the
// generation helper (src/model/generate.cpp).
//   CPU, f64 and f32: a tiny GPT-2 and a tiny NeoX (rotary) model, kinds full and sliding_window
//   with windows 1, 3 and 20 > T, fed token by token, prompt + tokens, and in chunks: the logits
//   equal the full forward's (f64 within 1e-12, f32 within 1e-5, relative to max |logit|).
//   GPU (skipped without CUDA), bf16 and f32, head dim 64: decoding on the device against the full
//   forward on the device (the fused kernels once they land) and against the f64 CPU model on the
//   same (rounded) weights. bf16: rel_l2 <= 3e-2 and max_abs <= 0.1 max|logit| (every activation is
//   rounded to bf16, 2^-8 each, and the two paths round different intermediates); f32: 1e-4.
//   Generation: greedy = argmax of the full forward at every step, seeds reproduce, top-k.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <map>
#include <set>

#include "backend/cuda_device.h"
#include "model/generate.h"
#include "model/tiny_models.h"
#include "testing/parity.h"
#include "testing/test_helpers.h"

using namespace sk;

namespace {

struct KindCase {
  std::string kind;
  int64_t window;
};
const std::vector<KindCase> kKinds = {{"full", 0}, {"sliding_window", 1}, {"sliding_window", 3},
                                      {"sliding_window", 20}};

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Logits of decoding idx (B, T) in steps of the given sizes, concatenated along T, on the host.
std::vector<double> decode_logits(const model::Gpt& gpt, const Tensor& idx, const std::vector<int64_t>& steps) {
  const int64_t B = idx.size(0), T = idx.size(1);
  model::KvCache cache = gpt.new_cache(B, T);
  std::vector<Tensor> parts;
  int64_t t = 0;
  for (int64_t n : steps) {
    parts.push_back(gpt.forward_step(idx.slice(1, t, t + n), cache).to(Device::cpu()).to(DType::F64));
    t += n;
    EXPECT_EQ(cache.length, t);
  }
  EXPECT_EQ(t, T);
  // Reassemble (B, T, Vp) row-major from the per-step (B, n, Vp) blocks.
  const int64_t Vp = parts[0].size(2);
  std::vector<double> out(B * T * Vp);
  t = 0;
  for (const Tensor& p : parts) {
    std::vector<double> v = p.to_vector();
    const int64_t n = p.size(1);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < Vp; ++j) out[(b * T + t + i) * Vp + j] = v[(b * n + i) * Vp + j];
    t += n;
  }
  return out;
}

Tensor tokens(int64_t B, int64_t T, uint64_t seed, int64_t vocab, Device dev = Device::cpu()) {
  Rng rng(seed);
  return Tensor::randint({B, T}, rng, vocab, DType::I32, dev);
}

}  // namespace

TEST(GptDecode, cache_steps_match_full_forward_cpu) {
  const std::vector<std::vector<int64_t>> patterns = {{1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 1, 1, 1}, {2, 3, 1, 3}};
  for (const auto& [mname, mc] : std::map<std::string, config::ModelConfig>{{"gpt2", sk::testing::tiny_gpt2()},
                                                                             {"neox", sk::testing::tiny_neox()}})
    for (DType dt : {DType::F64, DType::F32}) {
      std::vector<double> full_attention_logits;
      for (const KindCase& kc : kKinds) {
        Rng rng(1);
        model::Gpt gpt(mc, sk::testing::attention_kind(kc.kind, kc.window), dt, Device::cpu(), rng);
        sk::testing::randomize(gpt, 2);
        Tensor idx = tokens(2, 9, 3, mc.vocab_size);
        std::vector<double> full = gpt.forward(idx).to_vector();
        const double scale = max_abs(full), tol = (dt == DType::F64 ? 1e-12 : 1e-5) * scale;
        for (const auto& pat : patterns) {
          std::string label = mname + " " + kc.kind + " w" + std::to_string(kc.window) + " " + dtype_name(dt) + " steps";
          for (int64_t n : pat) label += " " + std::to_string(n);
          SCOPED_TRACE(label);
          std::vector<double> got = decode_logits(gpt, idx, pat);
          ASSERT_EQ(got.size(), full.size());
          double err = 0;
          for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::abs(got[i] - full[i]));
          EXPECT_LE(err, tol) << "max |logit| " << scale;
        }
        // The test can fail: a window of 1 changes the logits of a model with full attention.
        if (kc.kind == "full") full_attention_logits = full;
        if (kc.window == 1) {
          double diff = 0;
          for (size_t i = 0; i < full.size(); ++i) diff = std::max(diff, std::abs(full[i] - full_attention_logits[i]));
          EXPECT_GT(diff, 1e-2 * scale) << mname << ": the attention mask does not reach the logits";
        }
      }
    }
}

TEST(GptDecode, cache_errors) {
  Rng rng(4);
  model::Gpt gpt(sk::testing::tiny_gpt2(), sk::testing::attention_kind("full"), DType::F64, Device::cpu(), rng);
  EXPECT_THROW(gpt.new_cache(1, 17), Error);  // > block_size with learned positions
  model::KvCache cache = gpt.new_cache(1, 4);
  gpt.forward_step(tokens(1, 3, 5, 11), cache);
  EXPECT_THROW(gpt.forward_step(tokens(1, 2, 5, 11), cache), Error);  // 5 > 4 positions
  EXPECT_THROW(gpt.forward_step(tokens(2, 1, 5, 11), cache), Error);  // batch 2 into a batch-1 cache
  model::KvCache other;
  EXPECT_THROW(gpt.forward_step(tokens(1, 1, 5, 11), other), Error);  // not made by new_cache
}

TEST(CudaDecode, cache_steps_match_full_forward_gpu) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  for (const auto& [mname, mc0] : std::map<std::string, config::ModelConfig>{{"gpt2", sk::testing::tiny_gpt2(128, 2)},
                                                                              {"neox", sk::testing::tiny_neox(128, 2)}})
    for (const KindCase& kc : kKinds)
      for (DType dt : {DType::BF16, DType::F32}) {
        const std::string label = mname + " " + kc.kind + " w" + std::to_string(kc.window) + " " + dtype_name(dt);
        SCOPED_TRACE(label);
        config::ModelConfig mc = mc0;  // head dim 64
        Rng rng(1);
        model::Gpt ref(mc, sk::testing::attention_kind(kc.kind, kc.window), DType::F64, Device::cpu(), rng);
        sk::testing::randomize(ref, 2);
        model::Gpt gpu(mc, sk::testing::attention_kind(kc.kind, kc.window), dt, dev, rng);
        sk::testing::copy_parameters(ref, gpu);
        sk::testing::copy_parameters(gpu, ref);  // the reference sees the rounded weights
        Tensor idx = tokens(2, 13, 3, mc.vocab_size);
        const Tensor want = ref.forward(idx);
        const Tensor full = gpu.forward(idx.to(dev)).to(Device::cpu()).to(DType::F64);
        const double rel_tol = dt == DType::BF16 ? 3e-2 : 1e-4, max_tol = dt == DType::BF16 ? 0.1 : 1e-4;
        for (const std::vector<int64_t>& pat : {std::vector<int64_t>(13, 1), std::vector<int64_t>{5, 1, 1, 1, 1, 4}}) {
          const Tensor got = Tensor::from_vector(decode_logits(gpu, idx.to(dev), pat), want.shape(), DType::F64);
          for (const auto& [what, other] : {std::pair<std::string, Tensor>{"vs device forward", full},
                                            std::pair<std::string, Tensor>{"vs f64 CPU", want}}) {
            const sk::testing::ParityReport r = sk::testing::compare(got, other);
            const double scale = max_abs(other.to_vector());
            std::cout << "[parity] decode " << label << " steps " << pat.size() << " " << what << ": " << r.str()
                      << std::endl;
            EXPECT_FALSE(r.non_finite) << what;
            EXPECT_LE(r.rel_l2, rel_tol) << what << ": " << r.str();
            EXPECT_LE(r.max_abs, max_tol * scale) << what << ": " << r.str();
          }
        }
      }
}

TEST(GptCost, train_flops_per_token) {
  // 2 layers, C = 64 (4 heads of 16), vocabulary 1000 padded to 1024, T = 100: 6 x the matrix
  // weights (12 C^2 per layer + the tied head Vp x C; not wpe) plus, per layer, causal attention
  // (4 + 10) x H x D x T(T+1)/2 / T.
  config::ModelConfig mc;
  mc.n_layer = 2;
  mc.n_head = 4;
  mc.n_embd = 64;
  mc.vocab_size = 1000;
  mc.block_size = 128;
  Rng rng(30);
  const double C = 64, T = 100, Vp = 1024, matrices = 2 * 12 * C * C + Vp * C;
  model::Gpt gpt(mc, sk::testing::attention_kind("full"), DType::F32, Device::cpu(), rng);
  const double want = 6.0 * matrices + 2 * 14.0 * 4 * 16 * (T * (T + 1) / 2) / T;
  EXPECT_NEAR(gpt.train_flops_per_token(100), want, want * 1e-12);
  // Untied head: lm_head counts instead of wte. A sliding window of 8 keys: the cost model's count.
  mc.tied_embeddings = false;
  model::Gpt sw(mc, sk::testing::attention_kind("sliding_window", 8), DType::F32, Device::cpu(), rng);
  const double keys = 8.0 * 9 / 2 + (T - 8) * 8;
  EXPECT_NEAR(sw.train_flops_per_token(100), 6.0 * matrices + 2 * 14.0 * 4 * 16 * keys / T, want * 1e-12);
}

// ---- generation -----------------------------------------------------------------------------

TEST(Generate, greedy_is_argmax_of_full_forward) {
  for (const config::ModelConfig& mc : {sk::testing::tiny_gpt2(), sk::testing::tiny_neox()})
    for (const KindCase& kc : kKinds) {
      Rng rng(6);
      model::Gpt gpt(mc, sk::testing::attention_kind(kc.kind, kc.window), DType::F64, Device::cpu(), rng);
      sk::testing::randomize(gpt, 7);
      const std::vector<int64_t> prompt = {3, 1, 4};
      model::GenerateOptions o;
      o.max_new_tokens = 8;
      o.temperature = 0;
      std::vector<int64_t> got = model::generate(gpt, prompt, o);
      ASSERT_EQ(got.size(), 8u);
      std::vector<int64_t> seq = prompt;
      for (int64_t tok : got) {
        const int64_t T = int64_t(seq.size());
        std::vector<double> last =
            gpt.forward(Tensor::from_ints(seq, {1, T})).slice(1, T - 1, T).slice(2, 0, mc.vocab_size).to_vector();
        EXPECT_EQ(tok, std::max_element(last.begin(), last.end()) - last.begin()) << kc.kind << " at " << T;
        seq.push_back(tok);
      }
    }
}

TEST(Generate, seeds_top_k_stop_and_limits) {
  Rng rng(8);
  const config::ModelConfig mc = sk::testing::tiny_neox();
  model::Gpt gpt(mc, sk::testing::attention_kind("full"), DType::F32, Device::cpu(), rng);
  sk::testing::randomize(gpt, 9);
  model::GenerateOptions o;
  o.max_new_tokens = 12;
  o.temperature = 1.5;
  o.seed = 1;
  const std::vector<int64_t> a = model::generate(gpt, {2, 5}, o), b = model::generate(gpt, {2, 5}, o);
  EXPECT_EQ(a, b);  // same seed, same tokens
  o.seed = 2;
  EXPECT_NE(model::generate(gpt, {2, 5}, o), a);  // 11^12 sequences: a collision would be a bug
  for (int64_t t : a) EXPECT_TRUE(t >= 0 && t < mc.vocab_size);
  // top_k = 1 is greedy whatever the temperature.
  o.top_k = 1;
  model::GenerateOptions g = o;
  g.temperature = 0;
  g.top_k = 0;
  EXPECT_EQ(model::generate(gpt, {2, 5}, o), model::generate(gpt, {2, 5}, g));
  // Stop token and the callback.
  o.top_k = 0;
  o.stop_token = a[3];
  o.seed = 1;
  std::vector<int64_t> stopped = model::generate(gpt, {2, 5}, o);
  EXPECT_LE(stopped.size(), 4u);
  EXPECT_EQ(stopped.back(), a[3]);
  o.stop_token = -1;
  std::vector<int64_t> seen;
  std::vector<int64_t> cut = model::generate(gpt, {2, 5}, o, [&](int64_t t) {
    seen.push_back(t);
    return seen.size() < 5;
  });
  EXPECT_EQ(cut, seen);
  EXPECT_EQ(cut, std::vector<int64_t>(a.begin(), a.begin() + 5));
  // Learned positions bound prompt + new tokens by block_size; bad inputs are named.
  Rng rng2(10);
  model::Gpt gpt2(sk::testing::tiny_gpt2(), sk::testing::attention_kind("full"), DType::F32, Device::cpu(), rng2);
  o.max_new_tokens = 15;
  EXPECT_NE(sk::testing::error_of([&] { model::generate(gpt2, {1, 2}, o); }).find("model.block_size"), std::string::npos);
  EXPECT_NE(sk::testing::error_of([&] { model::generate(gpt2, {}, o); }).find("prompt is empty"), std::string::npos);
  EXPECT_NE(sk::testing::error_of([&] { model::generate(gpt2, {11}, o); }).find("outside the vocabulary"),
            std::string::npos);
  // A rotary sliding-window model generates past its window with a ring of w keys.
  Rng rng3(11);
  model::Gpt sw(mc, sk::testing::attention_kind("sliding_window", 2), DType::F32, Device::cpu(), rng3);
  o.max_new_tokens = 40;
  EXPECT_EQ(model::generate(sw, {1}, o).size(), 40u);
}

TEST(Generate, sample_token_distribution) {
  Rng rng(12);
  const std::vector<double> logits = {0.0, 2.0, 2.0, -1.0, 1.0};
  EXPECT_EQ(model::sample_token(logits, {0.0, 0}, rng), 1);  // greedy: ties to the lower id
  // top_k = 2 draws only ids 1 and 2, about equally; temperature 1 over all follows softmax.
  std::map<int64_t, int> counts;
  for (int i = 0; i < 4000; ++i) counts[model::sample_token(logits, {1.0, 2}, rng)]++;
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_NEAR(counts[1] / 4000.0, 0.5, 0.05);
  counts.clear();
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[model::sample_token(logits, {1.0, 0}, rng)]++;
  double z = 0;
  for (double l : logits) z += std::exp(l);
  for (int64_t i = 0; i < 5; ++i) EXPECT_NEAR(counts[i] / double(n), std::exp(logits[i]) / z, 0.015) << "id " << i;
  EXPECT_THROW(model::sample_token(logits, {-1.0, 0}, rng), Error);
  EXPECT_THROW(model::sample_token({}, {1.0, 0}, rng), Error);
}

TEST(CudaDecode, generate_on_device) {
  SK_REQUIRE_CUDA();
  Rng rng(13);
  const config::ModelConfig mc = sk::testing::tiny_neox(128, 2);
  model::Gpt gpt(mc, sk::testing::attention_kind("sliding_window", 4), DType::BF16, Device::cuda(0), rng);
  sk::testing::randomize(gpt, 14);
  model::GenerateOptions o;
  o.max_new_tokens = 20;
  o.top_k = 5;
  o.seed = 3;
  std::vector<int64_t> a = model::generate(gpt, {1, 2, 3}, o);
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a, model::generate(gpt, {1, 2, 3}, o));
  for (int64_t t : a) EXPECT_TRUE(t >= 0 && t < mc.vocab_size);
}
