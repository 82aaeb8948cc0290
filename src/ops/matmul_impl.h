// Internals shared by src/ops/matmul.cpp and its cuBLASLt backend (src/ops/cublaslt_matmul.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::ops {

// How the last two dims (rows, cols) of an operand sit in memory: row-major with leading
// dimension ld (transposed = false), or column-major, i.e. a transposed view (transposed = true).
// ok = false when neither holds (the operand must be made contiguous first).
struct MatrixOperand {
  int64_t rows = 0, cols = 0, ld = 0, batch_stride = 0;
  bool transposed = false, ok = false;
};
MatrixOperand describe_operand(const Tensor& t);

// out = a @ b (+ bias over the last dim), no autograd. a, b as in ops::matmul.
Tensor matmul_forward(const Tensor& a, const Tensor& b, const Tensor& bias);

// The CUDA path of matmul_forward: out (contiguous) = a @ b + bias via cuBLASLt.
void cublaslt_matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias);

}  // namespace sk::ops
