// Rotary position embeddings as GPT-NeoX / Pythia apply them (half-split pairing, partial):
//   x: (B, H, T, D); the first R = rotary_dims dims rotate, the rest pass through unchanged.
//   For i < R/2 and position t (+ position_offset): theta = t * base^(-2i/R),
//     out[i]       = x[i] cos(theta) - x[i + R/2] sin(theta)
//     out[i + R/2] = x[i + R/2] cos(theta) + x[i] sin(theta)
//   Backward rotates the gradient by -theta.
// CPU reference (f32/f64) in rotary.cpp; CUDA: kernels/nn/rotary.cu (f32/bf16, the angles in
// double as the reference, fp32 rotation; any (B, H, T) strides with the last dim contiguous, so
// head views of a fused QKV projection go in without a copy). The output is contiguous.
// Tests: tests/nn/test_rotary.cpp (fp64 gradcheck, relative-position property),
// tests/nn/test_rotary_cuda.cpp (CudaParity.rotary).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::nn {

Tensor rotary(const Tensor& x, int64_t rotary_dims, double base = 10000.0, int64_t position_offset = 0);

}  // namespace sk::nn
