// The attention core of the full and sliding_window kinds as ONE autograd function, on any device:
//   q, k, v (B, H, T, D) -> out (B, H, T, D), query i sees keys [mask.first_key(i), i].
// Saved for the backward: q, k, v, out and the log-sum-exp (B, H, T) of each query.
//   CPU (f32, f64):             the reference (reference.h), lse in the input's dtype.
//   CUDA, flash_attention_supported(q) (bf16, D in {64, 128}): the fused kernels
//                               (flash_attention.h), lse in fp32.
//   CUDA, anything else (f32, other head dims): the CPU reference in f32 on copies (slow; logged
//                               once), so small test models run everywhere.
// Tests: tests/attention/test_attention_interface.cpp (gradcheck), tests/model/test_gpt_cuda.cpp.
#pragma once
#include "attention/reference.h"

namespace sk::attention {

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask);

// The same core on a packed qkv (B, T, 3, H, D) (the fused projection's layout) -> out (B, H, T, D).
// On the fused CUDA kernels the gradient is written straight into one (B, T, 3, H, D) buffer (no
// split/concatenate copies); elsewhere this is causal_attention on the three views (same numbers).
Tensor causal_attention_packed(const Tensor& qkv, CausalWindow mask);

// Slot i (0: q, 1: k, 2: v) of a packed (B, T, 3, H, D) tensor as a (B, H, T, D) view (no copy).
Tensor packed_head(const Tensor& qkv, int64_t i);

}  // namespace sk::attention
