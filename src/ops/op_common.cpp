// Shared argument checks of the ops (op_common.h).
#include "ops/op_common.h"

namespace sk::ops {

void check_defined(const char* op, const char* arg, const Tensor& t) {
  SK_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}
void check_floating(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  SK_CHECK(is_floating(t.dtype()), op, ": argument '", arg, "' must be floating (f32, f64, bf16), got ",
           dtype_name(t.dtype()));
}
void check_same_device(const char* op, const char* arg_a, const Tensor& a, const char* arg_b, const Tensor& b) {
  SK_CHECK(a.device() == b.device(), op, ": '", arg_a, "' is on ", a.device().str(), " but '", arg_b, "' is on ",
           b.device().str());
}
void check_same_dtype(const char* op, const char* arg_a, const Tensor& a, const char* arg_b, const Tensor& b) {
  SK_CHECK(a.dtype() == b.dtype(), op, ": '", arg_a, "' is ", dtype_name(a.dtype()), " but '", arg_b, "' is ",
           dtype_name(b.dtype()));
}
void check_same_shape(const char* op, const char* arg_a, const Tensor& a, const char* arg_b, const Tensor& b) {
  SK_CHECK(a.shape() == b.shape(), op, ": '", arg_a, "' has shape ", shape_str(a.shape()), " but '", arg_b,
           "' has shape ", shape_str(b.shape()));
}
void check_cuda_dtype(const char* op, const Tensor& t) {
  SK_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, op, ": CUDA kernels take f32 or bf16, got ",
           dtype_name(t.dtype()), " (f64 is for the CPU reference)");
}

}  // namespace sk::ops
