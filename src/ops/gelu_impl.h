// Internals of src/ops/gelu.cpp shared with the fused MLP (src/ops/mlp.cpp): GELU forward and
// backward on contiguous tensors, no autograd.
#pragma once
#include "tensor/tensor.h"

namespace sk::ops {

Tensor gelu_forward(const Tensor& x, bool tanh_form);                        // y = gelu(x)
Tensor gelu_backward(const Tensor& dy, const Tensor& x, bool tanh_form);     // dx = dy * gelu'(x)

}  // namespace sk::ops
