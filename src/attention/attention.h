// The attention interface: one abstract module per attention kind (full, sliding_window, and the
// kinds added later: lsh, sparsek), built by name from the `attention.*` config through a registry,
// so that the model never names a kind. docs/ATTENTION.md describes it and how to add a kind.
//
// A module OWNS its parameters: the projections (fused QKV, output) and whatever a kind adds (a
// scoring network, a shared query/key projection). It applies rotary embeddings when the model asks
// for them. Its attention core is ONE autograd function (out and the fp32 log-sum-exp saved for the
// backward). Incremental decoding goes through forward_step with a kind-specific cache.
//
// Legend: B batch, T time (positions), H heads, D head dim, C channels (= H * D).
// Tests: tests/attention/test_attention_interface.cpp (gradcheck through the interface, registry,
// cost model, decode vs forward), tests/model/test_gpt_decode.cpp (the model's decode).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/run_config.h"
#include "tensor/tensor.h"

namespace sk::attention {

// Everything a module needs to build itself.
struct AttentionSpec {
  config::AttentionConfig attention;  // kind, window and the per-kind parameters
  int64_t n_embd = 0;                 // C (a multiple of n_head)
  int64_t n_head = 0;                 // H; D = C / H
  bool bias = true;                   // biases on the projections
  double rotary_pct = 0.0;            // fraction of each head's dims with rotary embeddings (0: none)
  double rotary_base = 10000.0;
  int64_t n_layer = 1;                // residual projections start at N(0, 0.02 / sqrt(2 n_layer))
  int64_t layer = 0;                  // this layer's index (error messages, per-layer seeds)
  DType dtype = DType::F32;
  Device device = Device::cpu();

  static AttentionSpec from_config(const config::ModelConfig& model, const config::AttentionConfig& attention,
                                   int64_t layer, DType dtype, Device device);
  int64_t head_dim() const { return n_embd / n_head; }
  // Dims per head that rotate: D * rotary_pct rounded down (0: no rotary).
  int64_t rotary_dims() const { return static_cast<int64_t>(double(head_dim()) * rotary_pct); }
};

// Per-layer decoding state of one module (a KV cache, plus whatever else a kind keeps). Made by
// Attention::new_cache; only the module that made it may use it.
class AttentionCache {
 public:
  virtual ~AttentionCache() = default;
  int64_t positions() const { return positions_; }  // tokens consumed so far (the next one's position)
  virtual int64_t batch() const = 0;

 protected:
  int64_t positions_ = 0;
};

class Attention {
 public:
  virtual ~Attention() = default;

  virtual std::string kind() const = 0;

  // x: (B, T, C), the block's normalised input at positions 0..T-1 -> (B, T, C). Differentiable
  // with respect to x and every parameter.
  virtual Tensor forward(const Tensor& x) const = 0;

  // Incremental decoding (inference only, no autograd). new_cache makes an empty cache for
  // `batch` sequences of at most `max_positions` tokens (a kind may keep less: a sliding window
  // keeps only its last w keys). forward_step takes x (B, n, C), the normalised inputs of the next
  // n positions after those the cache holds, returns (B, n, C) equal to what forward gives at those
  // positions over the whole sequence, and appends the n positions to the cache.
  virtual std::unique_ptr<AttentionCache> new_cache(int64_t batch, int64_t max_positions) const = 0;
  virtual Tensor forward_step(const Tensor& x, AttentionCache& cache) const = 0;

  // Per-step randomness (lsh draws its hash rotations from the run seed, the layer and this step):
  // the training step about to run, or -1 for evaluation (fixed rotations; the default). Kinds
  // without randomness ignore it. Gpt::set_step forwards it to every layer.
  virtual void set_step(int64_t step) const { (void)step; }

  // Parameters with names relative to the layer ("qkv_w", "qkv_b", "proj_w", "proj_b", then the
  // kind's own; lsh has "qk_w", "v_w", "proj_w", "proj_b"), in a fixed order. The model prefixes
  // "h.<layer>.".
  virtual std::vector<std::pair<std::string, Tensor>> named_parameters() const = 0;

  // Cost model: keys attended by the T queries of one sequence, summed over the queries (per
  // batch element and head). Useful FLOPs: attention_forward_flops below.
  virtual int64_t keys_attended(int64_t T) const = 0;
};

// Useful FLOPs of the attention core for `keys` (= keys_attended(T)) per (batch, head), counted as
// FlashAttention does: forward 2 matmuls of 2 * D FLOPs per (query, key) pair, i.e. for full causal
// attention 4 * B * H * T^2 * D / 2; the backward counts 2.5x the forward.
inline double attention_forward_flops(int64_t keys, int64_t batch, int64_t heads, int64_t head_dim) {
  return 4.0 * double(keys) * double(batch) * double(heads) * double(head_dim);
}
inline double attention_backward_flops(int64_t keys, int64_t batch, int64_t heads, int64_t head_dim) {
  return 2.5 * attention_forward_flops(keys, batch, heads, head_dim);
}

// ---- registry ----------------------------------------------------------------------------------
// Factories draw their initial parameters from rng, in a fixed order (the model's initialisation
// is reproducible from its seed).
using AttentionFactory = std::function<std::unique_ptr<Attention>(const AttentionSpec& spec, Rng& rng)>;

// Makes the module for spec.attention.kind; an unknown kind throws sk::Error listing the known ones.
std::unique_ptr<Attention> make_attention(const AttentionSpec& spec, Rng& rng);
// Adds a kind at run time (tests, plugins); the built-in kinds are listed in registry.cpp.
// Throws if the name is taken.
void register_attention_kind(const std::string& kind, AttentionFactory factory);
// Names of every registered kind, sorted.
std::vector<std::string> attention_kinds();

}  // namespace sk::attention
