// Rotary position embeddings as GPT-NeoX / Pythia apply them (half-split pairing, partial):
//   x: (B, H, T, D); the first R = rotary_dims dims rotate, the rest pass through unchanged.
//   For i < R/2 and position t (+ position_offset): theta = t * base^(-2i/R),
//     out[i]       = x[i] cos(theta) - x[i + R/2] sin(theta)
//     out[i + R/2] = x[i + R/2] cos(theta) + x[i] sin(theta)
//   Backward rotates the gradient by -theta.
// CPU reference (f32/f64) here; the CUDA kernel belongs to the model issue (until then CUDA
// tensors are refused with a clear error). Tests: tests/nn/test_rotary.cpp (fp64 gradcheck,
// relative-position property).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::nn {

Tensor rotary(const Tensor& x, int64_t rotary_dims, double base = 10000.0, int64_t position_offset = 0);

}  // namespace sk::nn
