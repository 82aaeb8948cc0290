// Argument handling shared by the host sides of the fused CUDA attention kernels (flash:
// src/attention/flash_attention.cpp; SparseK: src/attention/sparsek/sparsek_cuda.cpp): which
// inputs the kernels take, the checks with the op's name in the message, and the common part of
// the kernel parameters (SkFlashParams, kernels/attention/flash_attention.h).
//   q, k, v: (B, H, T, D) bf16 on one CUDA device, any strides with a contiguous last dim.
#pragma once
#include "tensor/tensor.h"

#ifdef SPARSEK_HAS_CUDA
#include "kernels/attention/flash_attention.h"
#endif

namespace sk::attention {

// True when q is (B, H, T, D) bf16 on CUDA with D in {64, 128} (false in a CPU-only build).
bool fused_attention_takes(const Tensor& q);
// Throws (message starting with `op`) unless fused_attention_takes(q).
void check_fused_attention_q(const Tensor& q, const char* op);

#ifdef SPARSEK_HAS_CUDA
// x's (batch, head, row) strides; throws unless its last dim is contiguous. `op` starts messages.
SkFlashStrides attention_strides(const Tensor& x, const char* op, const char* name);
// Throws unless x is shaped like q and is bf16 on q's device.
void check_attention_input(const Tensor& x, const Tensor& q, const char* op, const char* name);
// Pointers, strides, sizes, window and 1 / sqrt(D) for q, k, v (checked as above).
SkFlashParams attention_params(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, const char* op);
// SPARSEK_FLASH_BWD picks the flash backward's main kernel (SkFlashParams::backward_kernel): unset or
// "auto" (wgmma_pipelined on compute capability 9.0, else mma.sync), "mma", "wgmma" (dQ split by
// columns), "wgmma_keysplit", "wgmma_pipelined", "wgmma_pipelined_keysplit" (the overlapped
// schedule, flash_backward_sm90.cu). Read at every call, so a benchmark or a test can switch it;
// SparseK's window part runs through the same kernels.
int flash_backward_kernel_from_env();
// A wgmma kernel chosen through `variable` (kernel >= 2) runs on compute capability 9.0 only, at
// head dim 64, or also at 128 when it is `hd128_kernel` (the backward's wgmma_pipelined): anything
// else is the user's error, named here (the launcher would only say "bad argument").
void check_wgmma_choice(const char* variable, int kernel, int64_t head_dim, int device, int hd128_kernel = -1);
#endif

}  // namespace sk::attention
