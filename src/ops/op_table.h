// The op table: every differentiable op, once (the optimizer steps, AdamW and gradient clipping,
// are not differentiable and are tested against fp64 formulas in tests/optim/). Tests derive their coverage from it: the
// coverage test (tests/ops/test_op_coverage.cpp) fails when an op listed here has no gradcheck
// test named Gradcheck.<name> or no CUDA parity case named CudaParity.<name>.
//   X(name, cpu_reference_file, cuda_kernel_file)
#pragma once

#define SK_OP_TABLE(X)                                            \
  X(add, "src/ops/elementwise.cpp", "kernels/ops/elementwise.cu") \
  X(sub, "src/ops/elementwise.cpp", "kernels/ops/elementwise.cu") \
  X(mul, "src/ops/elementwise.cpp", "kernels/ops/elementwise.cu") \
  X(scale, "src/ops/elementwise.cpp", "kernels/ops/elementwise.cu") \
  X(gelu_tanh, "src/ops/gelu.cpp", "kernels/ops/gelu.cu")         \
  X(gelu_erf, "src/ops/gelu.cpp", "kernels/ops/gelu.cu")          \
  X(layernorm, "src/ops/layernorm.cpp", "kernels/ops/layernorm.cu") \
  X(add_layernorm, "src/ops/layernorm.cpp", "kernels/ops/layernorm.cu") \
  X(softmax, "src/ops/softmax.cpp", "kernels/ops/softmax.cu")     \
  X(embedding, "src/ops/embedding.cpp", "kernels/ops/embedding.cu") \
  X(cross_entropy, "src/ops/cross_entropy.cpp", "kernels/ops/cross_entropy.cu") \
  X(matmul, "src/ops/matmul.cpp", "cuBLASLt")                     \
  X(batched_matmul, "src/ops/matmul.cpp", "cuBLASLt")             \
  X(linear, "src/ops/matmul.cpp", "cuBLASLt")                     \
  X(mlp_gelu, "src/ops/mlp.cpp", "cuBLASLt epilogues")            \
  X(sum, "src/ops/reduce.cpp", "kernels/ops/reduce.cu")           \
  X(mean, "src/ops/reduce.cpp", "kernels/ops/reduce.cu")          \
  X(sum_rows, "src/ops/reduce.cpp", "kernels/ops/reduce.cu")      \
  X(transpose_contiguous, "src/tensor/tensor.cpp", "kernels/tensor/copy.cu") \
  X(slice, "src/tensor/tensor.cpp", "kernels/tensor/copy.cu")     \
  X(to_dtype, "src/tensor/tensor.cpp", "kernels/tensor/copy.cu")

#define SK_OP_COUNT_ONE(name, cpu, cuda) +1
inline constexpr int kOpCount = 0 SK_OP_TABLE(SK_OP_COUNT_ONE);
static_assert(kOpCount == 21, "op table changed: update tests/ops/test_op_coverage.cpp expectations");
