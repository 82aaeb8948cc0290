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
#endif

}  // namespace sk::attention
