// CPU reference of causal softmax attention for the `full` and `sliding_window` kinds
// (../shared/docs/attention-spec.md sections 1 and 2), forward and backward, f32 and f64,
// written for clarity: the definition every CUDA attention kernel is checked against.
//
//   q, k, v: (B, H, T, D), out: (B, H, T, D), lse: (B, H, T) (log-sum-exp of each query's scores,
//   kept for the backward as FlashAttention does). Scale s = 1/sqrt(D).
//   full:            query i sees keys j in [0, i].
//   sliding_window:  query i sees keys j in [i - w + 1, i]: exactly w keys including itself
//                    (fewer at the start). FlashAttention's window_size = (w, 0) means w + 1 keys.
// Tests: tests/attention/test_attention_reference.cpp (fp64 gradcheck, window edge cases).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::attention {

struct CausalWindow {
  int64_t window = 0;  // 0: full causal attention; w >= 1: sliding window of w keys
  // First key position query i may see.
  int64_t first_key(int64_t i) const { return window > 0 && i - window + 1 > 0 ? i - window + 1 : 0; }
};

// Differentiable (q, k, v) -> out. Inputs f32 or f64 CPU tensors of equal shape (B, H, T, D).
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask);

// The two halves, without autograd (used by the op above and by kernel tests).
struct AttentionForward {
  Tensor out;  // (B, H, T, D)
  Tensor lse;  // (B, H, T)
};
AttentionForward attention_reference_forward(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask);
struct AttentionGrads {
  Tensor dq, dk, dv;  // (B, H, T, D) each
};
AttentionGrads attention_reference_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                            const AttentionForward& fwd, CausalWindow mask);

}  // namespace sk::attention
