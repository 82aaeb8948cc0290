// sparsek CUDA kernels: fused causal attention, FlashAttention-2 style (declarations; kernels in
// flash_forward.cu and flash_backward.cu, tile helpers in flash_tile.cuh).
// bf16 inputs, fp32 accumulation, head dim 64 or 128, causal with an optional sliding window of
// `window` keys (0 = full causal; query i sees keys [i - window + 1, i]).
// Layouts (element strides; the last dim of every tensor is contiguous):
//   q, k, v, dout:  (B, H, T, D) with arbitrary batch / head / row strides.
//   out, dq, dk, dv: (B, T, H, D) contiguous bf16.  lse, delta: (B, H, T) fp32 contiguous.
//   dq_accum:        (B, T, H, D) fp32 scratch (the backward accumulates dQ there with atomics, so
//                    dQ is the one output that is not bitwise deterministic).
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

struct SkFlashStrides {
  int64_t batch, head, row;
};

struct SkFlashParams {
  const void* q;
  const void* k;
  const void* v;
  SkFlashStrides q_stride, k_stride, v_stride;
  int batch, heads, seq_len, head_dim;
  int window;           // 0: full causal
  float softmax_scale;  // usually 1 / sqrt(head_dim)
  // Backward only: elements between rows t and t + 1 of dq, dk and dv (each (B, T, H, D) with
  // that row stride; head h at + h * D). 0 means H * D (contiguous). 3 * H * D writes the three
  // gradients straight into one packed (B, T, 3, H, D) buffer. Must be even.
  int64_t grad_row_stride;
  // Backward only: 1 = dk and dv are fp32 (float *; rows grad_row_stride floats apart, even) and
  // get dK WITHOUT the softmax scale (the caller scales), for callers that add more terms to them
  // (SparseK: its selected keys' atomics land on the window part's dK / dV); 0 = bf16 as above.
  int grad_kv_f32;
  // Backward only: which main kernel. 0: the default for the device (at hd 64 on compute
  // capability 9.0 wgmma with the pipelined schedule, i.e. 4; else mma.sync); 1: mma.sync (flash_backward.cu); 2: wgmma, dQ split by columns;
  // 3: wgmma, dQ split by keys; 4, 5: as 2, 3 with the pipelined schedule (flash_backward_sm90.cu).
  // 2-5 need hd 64 and a 9.0 device.
  int backward_kernel;
  // Forward only: 0 the default for the device (wgmma at hd 64 on compute capability 9.0, i.e. 2;
  // else mma.sync), 1 mma.sync (flash_forward.cu), 2 wgmma (flash_forward_sm90.cu; hd 64, a 9.0 device).
  int forward_kernel;
  // The softmax's exp2 in the flash kernels (mma.sync forward and backward, the wgmma forward and
  // the wgmma backward's default pipelined column-split schedule; its other schedules use exp2f):
  // 0 exp2f (PTX ex2.approx.f32, which ptxas wraps in a denormal range check: four instructions),
  // 1 ex2.approx.ftz.f32 (one instruction; results below 2^-126 become 0). Default 1 (host side:
  // SPARSEK_FLASH_EXP2=accurate gives 0); measured on an H200 in docs/perf-notes.md.
  int exp2_ftz;
};

// Test-only (sk_cuda_flash_forward_sm90_dump): where the wgmma forward writes, for one block
// (128 queries of batch 0, head 0), what its products saw and made. fp32, row-major:
//   q: (128, 64) the block's Q tile as in shared memory;
//   k: (tiles, 64, 64) each visited K tile as in shared memory, in visiting order;
//   s: (tiles, 128, 64) each S = Q K^T tile as the product left it (unscaled, before the mask).
// tiles = the block's number of visited key tiles of 64 (at most ceil(T / 64)).
struct SkFlashForwardDump {
  float* q;
  float* k;
  float* s;
  int block;  // the query block (queries [128 * block, 128 * block + 128))
};

#ifdef __cplusplus
extern "C" {
#endif

// out = softmax(scale q k^T + causal/window mask) v; lse = log-sum-exp of the masked scaled scores.
int sk_cuda_flash_forward(const SkFlashParams* p, void* out, float* lse, cudaStream_t s);

// Backward from dout (strides dout_stride) and the forward's out and lse. Writes dq, dk, dv
// ((B, T, H, D) bf16 with row stride p->grad_row_stride; dk, dv fp32 with p->grad_kv_f32) and uses
// delta ((B, H, T) fp32) and dq_accum ((B, T, H, D) fp32, contiguous) as scratch. dq may be null:
// then dq_accum is left holding dQ WITHOUT the softmax scale (no finishing pass).
int sk_cuda_flash_backward(const SkFlashParams* p, const void* dout, SkFlashStrides dout_stride, const void* out,
                           const float* lse, void* dq, void* dk, void* dv, float* delta, float* dq_accum,
                           cudaStream_t s);

// The wgmma forward (forward_kernel 2: hd 64, compute capability 9.0) with the test-only dump above.
int sk_cuda_flash_forward_sm90_dump(const SkFlashParams* p, void* out, float* lse, SkFlashForwardDump dump,
                                    cudaStream_t s);

#ifdef __cplusplus
}
#endif
