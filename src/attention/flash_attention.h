// Fused causal attention on CUDA (FlashAttention-2-style tiling, online softmax, recomputation in
// the backward) for the `full` and `sliding_window` kinds: the GPU counterpart of
// src/attention/reference.h, with the same mask (CausalWindow) and the same saved state.
//
//   q, k, v: (B, H, T, D) bf16 on CUDA, any strides with the last dim contiguous (so views of a
//            fused (B, T, 3, H, D) projection can be passed without copies); D in {64, 128}.
//   out:     (B, H, T, D) bf16, a view of a contiguous (B, T, H, D) buffer, so that
//            out.transpose(1, 2).reshape({B, T, H * D}) is free.
//   lse:     (B, H, T) f32, natural-log log-sum-exp of each query's scaled scores.
// Kernels: kernels/attention/flash_forward.cu, flash_backward.cu. Tests:
// tests/attention/test_flash_attention.cpp (against the CPU reference).
#pragma once
#include "attention/reference.h"

namespace sk::attention {

// True when the fused kernels take these inputs (CUDA build, bf16, D in {64, 128}).
bool flash_attention_supported(const Tensor& q);

AttentionForward flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask);

// Gradients in the layout of out: (B, H, T, D) bf16 views of contiguous (B, T, H, D) buffers.
AttentionGrads flash_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const AttentionForward& fwd, CausalWindow mask);

// The same gradients written straight into one packed dqkv (B, T, 3, H, D) bf16 buffer (contiguous):
// the layout of the fused QKV projection, so its gradient needs no split/concatenate copies.
void flash_attention_backward_packed(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const AttentionForward& fwd, CausalWindow mask, Tensor& dqkv);

}  // namespace sk::attention
