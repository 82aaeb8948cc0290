// Gpt: the decoder language model, GPT-2 style with the options GPT-NeoX/Pythia needs.
//   GPT-2:  learned positions, pre-LayerNorm blocks x + attn(ln1 x), then + mlp(ln2 x), tanh GELU,
//           head tied to the token embedding.
//   NeoX:   rotary embeddings on rotary_pct of each head's dims (half-split pairs), parallel
//           residual x + attn(ln1 x) + mlp(ln2 x), erf GELU, untied head (embed_out).
// Shapes: idx (B, T) i32/i64 -> logits (B, T, Vp), Vp = vocab padded to pad_vocab_multiple (the
// padding logits are excluded from the loss). Weights are stored PyTorch-style: linear (out, in).
// The fused QKV projection's output is laid out [3, H, D] (q heads, then k, then v), as GPT-2's
// c_attn; importers permute other layouts (NeoX's [H, 3, D]) into it.
// Attention: each block owns one module of the attention interface (src/attention/attention.h),
// made by name from attention.kind; the module owns the QKV and output projections (and a kind's
// extra parameters) and applies rotary. Decoding: new_cache + forward_step (inference only).
// Tests: tests/model/test_gpt_golden.cpp (against PyTorch/transformers fixtures), gradcheck;
// tests/model/test_gpt_decode.cpp (decode = full forward); tests/model/test_gpt_cuda.cpp.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attention/attention.h"
#include "config/run_config.h"
#include "model/kv_cache.h"
#include "tensor/tensor.h"

namespace sk::model {

struct Block {
  Tensor ln1_w, ln1_b;
  std::shared_ptr<const attention::Attention> attn;  // owns qkv_w (3C, C), proj_w (C, C), ...
  Tensor ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;      // fc_w (4C, C), fc2_w (C, 4C)
};

class Gpt {
 public:
  // Random initialisation (GPT-2 scheme: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
  // biases 0, LayerNorm 1/0) from rng, in dtype on device. Every parameter requires grad.
  Gpt(const config::ModelConfig& model, const config::AttentionConfig& attention, DType dtype, Device device, Rng& rng);

  Tensor forward(const Tensor& idx) const;  // (B, T) -> logits (B, T, Vp)

  // Incremental decoding (no autograd). new_cache: an empty cache for `batch` sequences of at most
  // max_positions tokens. forward_step: idx (B, n) holds the next n tokens of each sequence after
  // the cache's `length`; returns their logits (B, n, Vp), the same as forward over the whole
  // sequence gives at those positions, and advances the cache by n. Feed the prompt as one step.
  KvCache new_cache(int64_t batch, int64_t max_positions) const;
  Tensor forward_step(const Tensor& idx, KvCache& cache) const;
  // Mean cross-entropy of the next-token targets (B, T) over the real vocabulary.
  Tensor loss(const Tensor& idx, const Tensor& targets) const;

  // Per-step randomness of the attention layers (attention.h set_step): the training step about
  // to run, or -1 for evaluation (fixed). Only lsh uses it.
  void set_step(int64_t step) const {
    for (const Block& b : blocks_) b.attn->set_step(step);
  }
  // Every parameter with a stable name ("wte", "h.3.qkv_w", ...), in a fixed order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  const config::ModelConfig& config() const { return cfg_; }
  const config::AttentionConfig& attention_config() const { return attn_cfg_; }
  const attention::Attention& attention_layer(int64_t layer) const { return *blocks_.at(layer).attn; }
  DType dtype() const { return wte_.dtype(); }
  Device device() const { return wte_.device(); }
  int64_t num_parameters() const;
  // Useful FLOPs of one training step (forward + backward) per token at sequence length T, for MFU:
  // 6 per weight of every matrix used in a matmul (the 2-D parameters, the head; not the embedding
  // lookups), plus each layer's attention core from its cost model: attention_forward_flops(
  // keys_attended(T)) forward and 2.5x that backward (FlashAttention's convention), divided by T.
  double train_flops_per_token(int64_t T) const;

 private:
  // The whole network; cache == nullptr: forward (positions 0..T-1), else one decode step.
  Tensor run(const Tensor& idx, KvCache* cache) const;
  Tensor mlp_block(const Block& b, const Tensor& x) const;

  config::ModelConfig cfg_;
  config::AttentionConfig attn_cfg_;
  Tensor wte_, wpe_, lm_head_, lnf_w_, lnf_b_;
  std::vector<Block> blocks_;
};

}  // namespace sk::model
