// Internals shared by src/ops/matmul.cpp and its cuBLASLt backend (src/ops/cublaslt_matmul.cpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

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

// Work fused into a 2-D product out (M, N) = a (M, K) @ b (K, N) by a cuBLASLt epilogue, in
// row-major terms (every tensor contiguous, on out's device and dtype):
//   GeluTanhBias: aux = a @ b + bias (N); out = gelu_tanh(aux)            (forward of an MLP's FC)
//   DGeluTanhBgrad: out = (a @ b) * gelu_tanh'(aux); bias_grad (N) = column sums of out
//                                                                       (backward through the GELU)
//   BgradOfA: out = a @ b; bias_grad (M) = row sums of a, i.e. sums over K  (dW = dy^T x and
//             db = sum of dy over tokens in one pass, with a = dy^T)
enum class MatmulEpilogueKind { GeluTanhBias, DGeluTanhBgrad, BgradOfA };
struct MatmulEpilogue {
  MatmulEpilogueKind kind;
  Tensor bias;       // GeluTanhBias: input (N)
  Tensor aux;        // GeluTanhBias: output (M, N); DGeluTanhBgrad: input (M, N)
  Tensor bias_grad;  // DGeluTanhBgrad: output (N); BgradOfA: output (M)
};
// Runs the product with the epilogue and returns true, or returns false (nothing written) when
// cuBLASLt has no algorithm for it (the caller then computes the pieces with separate ops).
bool cublaslt_matmul_epilogue(const Tensor& out, const Tensor& a, const Tensor& b, const MatmulEpilogue& e);

// The weight and bias gradients of a linear layer, dy (N, out), x (N, in) contiguous:
// {dW = dy^T x (out, in), db = column sums of dy (out)}; one cuBLASLt call on CUDA where it can.
std::pair<Tensor, Tensor> weight_and_bias_grads(const Tensor& dy, const Tensor& x);

}  // namespace sk::ops
