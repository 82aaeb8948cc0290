// Gpt: the decoder language model, GPT-2 style with the options GPT-NeoX/Pythia needs.
//   GPT-2:  learned positions, pre-LayerNorm blocks x + attn(ln1 x), then + mlp(ln2 x), tanh GELU,
//           head tied to the token embedding.
//   NeoX:   rotary embeddings on rotary_pct of each head's dims (half-split pairs), parallel
//           residual x + attn(ln1 x) + mlp(ln2 x), erf GELU, untied head (embed_out).
// Shapes: idx (B, T) i32/i64 -> logits (B, T, Vp), Vp = vocab padded to pad_vocab_multiple (the
// padding logits are excluded from the loss). Weights are stored PyTorch-style: linear (out, in).
// The fused QKV projection's output is laid out [3, H, D] (q heads, then k, then v), as GPT-2's
// c_attn; importers permute other layouts (NeoX's [H, 3, D]) into it.
// Attention: this stage uses the CPU reference (src/attention/reference.h) for full and
// sliding_window; the attention interface with CUDA kernels comes with the attention issue.
// Tests: tests/model/test_gpt_golden.cpp (against PyTorch/transformers fixtures), gradcheck.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "config/run_config.h"
#include "tensor/tensor.h"

namespace sk::model {

struct Block {
  Tensor ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b;  // qkv_w (3C, C), proj_w (C, C)
  Tensor ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;      // fc_w (4C, C), fc2_w (C, 4C)
};

class Gpt {
 public:
  // Random initialisation (GPT-2 scheme: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
  // biases 0, LayerNorm 1/0) from rng, in dtype on device. Every parameter requires grad.
  Gpt(const config::ModelConfig& model, const config::AttentionConfig& attention, DType dtype, Device device, Rng& rng);

  Tensor forward(const Tensor& idx) const;  // (B, T) -> logits (B, T, Vp)
  // Mean cross-entropy of the next-token targets (B, T) over the real vocabulary.
  Tensor loss(const Tensor& idx, const Tensor& targets) const;

  // Every parameter with a stable name ("wte", "h.3.qkv_w", ...), in a fixed order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  const config::ModelConfig& config() const { return cfg_; }
  int64_t num_parameters() const;

 private:
  Tensor attention_block(const Block& b, const Tensor& x) const;  // x (B, T, C) normalised
  Tensor mlp_block(const Block& b, const Tensor& x) const;

  config::ModelConfig cfg_;
  config::AttentionConfig attn_cfg_;
  Tensor wte_, wpe_, lm_head_, lnf_w_, lnf_b_;
  std::vector<Block> blocks_;
};

}  // namespace sk::model
