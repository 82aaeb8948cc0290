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

// Test-only diagnostic of the wgmma forward (hd 64, compute capability 9.0): its out / lse plus,
// for query block `block` (queries [128 block, 128 block + 128)) of batch 0, head 0, the Q tile
// (128, 64) and K tiles (tiles, 64, 64) as the products read them from shared memory and the raw
// S = Q K^T tiles (tiles, 128, 64), f32 on the CPU (kernels/attention/flash_attention.h,
// SkFlashForwardDump). tiles = the key tiles of 64 the block visits, first to last.
struct WgmmaForwardDump {
  AttentionForward fwd;
  Tensor q_tile, k_tiles, s_tiles;
  int64_t first_key_tile = 0;  // the key tile (of 64) that k_tiles[0] / s_tiles[0] hold
};
WgmmaForwardDump wgmma_forward_dump(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask,
                                    int64_t block);

}  // namespace sk::attention
