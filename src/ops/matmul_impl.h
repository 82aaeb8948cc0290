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

// Work fused into a 2-D product out (M, N) = a (M, K) @ b (K, N) by a cuBLASLt epilogue, in
// row-major terms (every tensor contiguous, on out's device and dtype):
//   GeluTanhBias: aux = a @ b + bias (N); out = gelu_tanh(aux)            (forward of an MLP's FC)
//   DGeluTanh: out = (a @ b) * gelu_tanh'(aux)                       (backward through the GELU)
// (The bias-gradient epilogues DGELU_BGRAD and BGRADB were measured and dropped: they made the
// GPT-2 step slower, see docs/perf-notes.md.)
enum class MatmulEpilogueKind { GeluTanhBias, DGeluTanh };
struct MatmulEpilogue {
  MatmulEpilogueKind kind;
  Tensor bias;  // GeluTanhBias: input (N)
  Tensor aux;   // GeluTanhBias: output (M, N); DGeluTanh: input (M, N)
};
// Runs the product with the epilogue and returns true, or returns false (nothing written) when
// cuBLASLt has no algorithm for it (the caller then computes the pieces with separate ops).
bool cublaslt_matmul_epilogue(const Tensor& out, const Tensor& a, const Tensor& b, const MatmulEpilogue& e);

}  // namespace sk::ops
