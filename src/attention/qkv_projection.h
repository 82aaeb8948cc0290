// QkvProjection: the projections shared by the attention kinds with separate query, key and value
// heads (full, sliding_window; sparsek adds its scoring network next to it), owned by the module:
//   qkv_w (3C, C) + qkv_b (3C): x (B, T, C) -> (B, T, 3C) laid out [3, H, D] (q heads, k heads,
//                               v heads, as GPT-2's c_attn; importers permute NeoX's [H, 3, D])
//   rotary (when spec.rotary_dims() > 0) on q and k, positions offset by position_offset
//   proj_w (C, C) + proj_b (C):  o (B, H, T, D) -> (B, T, C)
// Biases exist when spec.bias. Initialisation (GPT-2): qkv_w ~ N(0, 0.02), then proj_w ~
// N(0, 0.02 / sqrt(2 n_layer)), drawn in that order; biases 0.
// Tests: through the kinds (tests/attention/test_attention_interface.cpp) and the model's golden
// test (tests/model/test_gpt_golden.cpp).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "attention/attention.h"

namespace sk::attention {

class QkvProjection {
 public:
  QkvProjection(const AttentionSpec& spec, Rng& rng);

  struct Heads {
    Tensor q, k, v;  // (B, H, T, D) each; views of the projection (last dim contiguous) or rotated copies
  };
  // x (B, T, C) at positions position_offset .. position_offset + T - 1.
  Heads heads(const Tensor& x, int64_t position_offset) const;
  // x (B, T, C) -> the fused projection (B, T, 3, H, D), without rotary (callers that use it
  // check spec().rotary_dims() == 0); for causal_attention_packed.
  Tensor packed(const Tensor& x) const;
  // o (B, H, T, D) -> (B, T, C) through the output projection.
  Tensor output(const Tensor& o) const;

  // "qkv_w", "qkv_b", "proj_w", "proj_b" (biases only when present).
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  const AttentionSpec& spec() const { return spec_; }

 private:
  AttentionSpec spec_;
  Tensor qkv_w_, qkv_b_, proj_w_, proj_b_;
};

}  // namespace sk::attention
