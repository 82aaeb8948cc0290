// Tiny model configs and a re-initialisation with O(1) weights for the model tests: with GPT-2's
// N(0, 0.02) init the attention barely moves the logits, so a wrong mask or cache would go unseen.
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "model/gpt.h"
#include "tensor/random.h"

namespace sk::testing {

// GPT-2 style: learned positions, tied head, tanh GELU, sequential residual.
inline config::ModelConfig tiny_gpt2(int64_t n_embd = 8, int64_t n_head = 2) {
  config::ModelConfig m;
  m.n_layer = 2;
  m.n_head = n_head;
  m.n_embd = n_embd;
  m.vocab_size = 11;
  m.pad_vocab_multiple = 4;
  m.block_size = 16;
  return m;
}

// NeoX style: partial rotary (half of each head), no learned positions, parallel residual, untied
// head, erf GELU.
inline config::ModelConfig tiny_neox(int64_t n_embd = 8, int64_t n_head = 2) {
  config::ModelConfig m = tiny_gpt2(n_embd, n_head);
  m.learned_positions = false;
  m.rotary_pct = 0.5;
  m.parallel_residual = true;
  m.tied_embeddings = false;
  m.gelu = "erf";
  return m;
}

// A "copy from `lag` back" batch: B sequences of T + 1 tokens whose first `lag` tokens are drawn
// uniformly from the vocabulary and every later token repeats the one `lag` positions earlier;
// returns (inputs, targets), both (B, T) int, targets shifted by one.
inline std::pair<Tensor, Tensor> lag_copy_batch(int64_t vocab, int64_t B, int64_t T, int64_t lag, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> seq(B * (T + 1));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t <= T; ++t)
      seq[b * (T + 1) + t] = t < lag ? int64_t(rng.below(uint64_t(vocab))) : seq[b * (T + 1) + t - lag];
  std::vector<int64_t> in(B * T), tg(B * T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      in[b * T + t] = seq[b * (T + 1) + t];
      tg[b * T + t] = seq[b * (T + 1) + t + 1];
    }
  return {Tensor::from_ints(in, {B, T}), Tensor::from_ints(tg, {B, T})};
}

inline config::AttentionConfig attention_kind(const std::string& kind, int64_t window = 0) {
  config::AttentionConfig a;
  a.kind = kind;
  a.window = window;
  return a;
}

// Every parameter redrawn (f64 values, converted to the parameter's dtype/device): matrices
// N(0, 1/in), biases N(0, 0.1), LayerNorm weights 1 + N(0, 0.1), embeddings N(0, 1).
inline void randomize(const model::Gpt& gpt, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, t] : gpt.named_parameters()) {
    double mean = 0, sd = 0.1;
    if (name == "wte" || name == "wpe" || name == "lm_head") sd = 1.0;
    else if (name.ends_with("ln1_w") || name.ends_with("ln2_w") || name == "lnf_w") mean = 1.0;
    else if (t.ndim() == 2) sd = 1.0 / std::sqrt(double(t.size(1)));
    t.copy_(Tensor::randn(t.shape(), rng, DType::F64, Device::cpu(), mean, sd));
  }
}

// Copies every parameter of `from` into `to` (same config; any dtypes/devices).
inline void copy_parameters(const model::Gpt& from, const model::Gpt& to) {
  auto a = from.named_parameters(), b = to.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) b[i].second.copy_(a[i].second);
}

}  // namespace sk::testing
