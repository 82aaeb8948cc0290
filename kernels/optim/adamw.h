// sparsek CUDA kernels: fused AdamW step (declarations; implemented in adamw.cu).
// Shapes: param, m, v [n] fp32; grad [n] (grad_dtype SK_KDT_F32 or SK_KDT_BF16);
// param_bf16 [n] bf16 (optional mirror of the fp32 master weights).
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// PyTorch AdamW (non-amsgrad) order, fp32:
//   g = grad * (grad_scale ? *grad_scale : 1)
//   param *= 1 - lr * weight_decay
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   denom = sqrt(v) / sqrt(bias_correction2) + eps
//   param -= (lr / bias_correction1) * m / denom
//   if param_bf16: param_bf16 = bf16(param)
// bias_correctionK = 1 - betaK^step (computed by the caller). grad_scale: nullable device scalar.
int sk_cuda_adamw_step(float* param, void* param_bf16, const void* grad, int grad_dtype, float* m, float* v,
                       int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float bias_correction1, float bias_correction2, const float* grad_scale, cudaStream_t s);

// The same step for many tensors sharing lr, betas, eps, step and grad_scale (each its own
// weight decay; all grads of grad_dtype): a few launches for any count (56 tensors per launch),
// results bit-identical to sk_cuda_adamw_step per tensor.
struct SkAdamwTensor {
  float* param;
  void* param_bf16;  // nullable
  const void* grad;
  float* m;
  float* v;
  int64_t n;
  float weight_decay;
};
int sk_cuda_adamw_step_multi(const SkAdamwTensor* tensors, int count, int grad_dtype, float lr, float beta1,
                             float beta2, float eps, float bias_correction1, float bias_correction2,
                             const float* grad_scale, cudaStream_t s);

#ifdef __cplusplus
}
#endif
