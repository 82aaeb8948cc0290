// Shared checks and dtype dispatch for the op implementations in src/ops/.
#pragma once
#include <string>

#include "tensor/tensor.h"
#include "util/check.h"

namespace sk::ops {

void check_defined(const char* op, const char* arg, const Tensor& t);
void check_floating(const char* op, const char* arg, const Tensor& t);
void check_same_device(const char* op, const char* arg_a, const Tensor& a, const char* arg_b, const Tensor& b);
void check_same_dtype(const char* op, const char* arg_a, const Tensor& a, const char* arg_b, const Tensor& b);
void check_same_shape(const char* op, const char* arg_a, const Tensor& a, const char* arg_b, const Tensor& b);
// CUDA ops take f32 or bf16 (f64 is the CPU reference's dtype).
void check_cuda_dtype(const char* op, const Tensor& t);

// Element i of a contiguous CPU tensor of indices (i32 or i64), as int64.
inline int64_t index_at(const Tensor& t, int64_t i) {
  return t.dtype() == DType::I32 ? t.data<int32_t>()[i] : t.data<int64_t>()[i];
}

// Calls f.template operator()<T>() with T = float or double for the CPU reference; throws for
// other dtypes, naming the op.
template <typename F>
void dispatch_cpu_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f.template operator()<float>(); break;
    case DType::F64: f.template operator()<double>(); break;
    default:
      SK_FAIL(op, ": the CPU reference computes in f32 or f64, got ", dtype_name(dt),
              " (convert with .to(DType::F32))");
  }
}

}  // namespace sk::ops
