// The differentiable operators. Each lives in src/ops/<name>.cpp with its CPU reference (f32 and
// f64, written for clarity), its CUDA dispatch (kernels/ops/<name>.cu: bf16 or f32 in, fp32
// accumulation) and its backward right below the forward. Tests: tests/ops/test_<name>.cpp
// (fp64 finite-difference gradcheck) and tests/cuda/test_cuda_parity.cpp (CUDA vs CPU).
//
// All inputs of one op must share device and (floating) dtype; violations throw sk::Error naming
// the op, the argument and both values. Inputs may be non-contiguous (they are made contiguous).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::ops {

// ---- elementwise (same shapes) ----
Tensor add(const Tensor& a, const Tensor& b);             // a + b
Tensor sub(const Tensor& a, const Tensor& b);             // a - b
Tensor mul(const Tensor& a, const Tensor& b);             // a * b
Tensor scale(const Tensor& a, double alpha);              // alpha * a

// ---- activations and normalisation ----
enum class GeluApprox { Erf, Tanh };
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::Tanh);
// LayerNorm over the last dim C: x (..., C), weight (C), bias (C) or undefined.
// Statistics in fp32 (fp64 for f64 tensors).
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// The pre-LayerNorm residual stream's add fused with the next LayerNorm: sum = x + residual (same
// shape, dtype, device; rounded to the dtype exactly as add), y = layernorm(sum, weight, bias, eps).
// One pass each way (the backward adds the sum's incoming gradient to LayerNorm's dx; x and
// residual both get that one tensor). sum_is_output = false (a final LayerNorm, whose sum nothing
// else reads): only y carries gradient; sum is still returned, as a value.
struct AddLayerNorm {
  Tensor sum;  // (..., C)
  Tensor y;    // (..., C)
};
AddLayerNorm add_layernorm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                           double eps = 1e-5, bool sum_is_output = true);
// Softmax over the last dim.
Tensor softmax(const Tensor& x);

// ---- embedding ----
// table (V, C), idx (...) i32/i64 -> (..., C). Indices outside [0, V) throw sk::Error.
// Backward: scatter-add into dtable (fp32 accumulation).
Tensor embedding(const Tensor& table, const Tensor& idx);

// ---- fused softmax + cross-entropy over a (possibly padded) vocabulary ----
enum class Reduction { Mean, Sum, None };
struct CrossEntropyOptions {
  int64_t valid_vocab = -1;   // only the first valid_vocab logits of a row count (-1: all)
  int64_t ignore_index = -1;  // rows with this target add 0 loss and get 0 gradient
  Reduction reduction = Reduction::Mean;  // Mean: over the non-ignored rows
};
// logits (..., Vp) f32/bf16/f64, targets (...) i32/i64 -> scalar (Mean/Sum) or (...) (None).
// The loss is computed in fp32 (f64 for f64 logits) and returned in f32 (f64). Never forms the
// probabilities: forward keeps one log-sum-exp per row; backward recomputes softmax from logits.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts = {});
// The same for logits the caller gives up (a temporary, e.g. the model's output projection): on
// CUDA, for a Mean loss that needs a gradient, when nothing else holds the logits' memory, the
// gradient is computed in the forward pass and written over the logits (one read of them instead
// of three; the backward only rescales when the upstream gradient is not 1). Otherwise as above.
Tensor cross_entropy(Tensor&& logits, const Tensor& targets, const CrossEntropyOptions& opts = {});

// ---- matrix products ----
// a (M, K) @ b (K, N) -> (M, N); a (B, M, K) @ b (B, K, N) or b (K, N) -> (B, M, N).
// Transposed views of the last two dims are used in place (no copy).
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ weight(out, in)^T + bias (out) -> (..., out); bias may be undefined.
// On CUDA the bias add is fused into the cuBLASLt epilogue.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// The transformer MLP, linear(gelu(linear(x, fc_w, fc_b)), fc2_w, fc2_b): x (..., C), fc_w (F, C),
// fc_b (F), fc2_w (C2, F), fc2_b (C2) -> (..., C2). The same values as that composition; on CUDA
// with tanh GELU and both biases one node whose GELU forward and backward ride in cuBLASLt
// epilogues (src/ops/mlp.cpp).
Tensor mlp_gelu(const Tensor& x, const Tensor& fc_w, const Tensor& fc_b, const Tensor& fc2_w, const Tensor& fc2_b,
                GeluApprox approx = GeluApprox::Tanh);

// ---- reductions ----
Tensor sum(const Tensor& x);       // all elements -> scalar (shape ()), fp32 accumulation
Tensor mean(const Tensor& x);      // all elements -> scalar
Tensor sum_rows(const Tensor& x);  // x (..., C) -> (C): sum over every leading dim

}  // namespace sk::ops
