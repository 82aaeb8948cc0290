// Elementwise ops on same-shape tensors: add, sub, mul, scale.
//   CPU reference: the loops below (f32/f64).  CUDA: kernels/ops/elementwise.cu (f32/bf16).
//   Backward: add/sub pass the gradient through (negated for sub's second input); mul multiplies
//   by the other input; scale by alpha.
//   Tests: tests/ops/test_elementwise.cpp (Gradcheck.add/sub/mul/scale), tests/cuda/test_cuda_parity.cpp.
#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/elementwise.h"
#endif

namespace sk::ops {

namespace {

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_floating(op, "a", a);
  check_floating(op, "b", b);
  check_same_device(op, "a", a, "b", b);
  check_same_dtype(op, "a", a, "b", b);
  check_same_shape(op, "a", a, "b", b);
}

// out = alpha*a + beta*b  (b may be undefined when beta == 0)
Tensor axpby_forward(const Tensor& a_in, const Tensor& b_in, double alpha, double beta) {
  Tensor a = a_in.contiguous();
  Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  const int64_t n = a.numel();
  if (a.device().is_cpu()) {
    dispatch_cpu_float(a.dtype(), "axpby", [&]<typename T>() {
      const T* pa = a.data<T>();
      const T* pb = b.defined() ? b.data<T>() : nullptr;
      T* po = out.data<T>();
      for (int64_t i = 0; i < n; ++i) po[i] = T(alpha) * pa[i] + (pb ? T(beta) * pb[i] : T(0));
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("add", a);
    cuda::set_device(a.device().index);
    if (b.defined())
      SK_KERNEL_CHECK(sk_cuda_axpby(out.data_ptr(), a.data_ptr(), b.data_ptr(), n, float(alpha), float(beta),
                                    kernel_dtype(a.dtype()), cuda::stream()));
    else
      SK_KERNEL_CHECK(sk_cuda_scale(out.data_ptr(), a.data_ptr(), float(alpha), n, kernel_dtype(a.dtype()), cuda::stream()));
#endif
  }
  return out;
}

Tensor mul_forward(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in.contiguous(), b = b_in.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  const int64_t n = a.numel();
  if (a.device().is_cpu()) {
    dispatch_cpu_float(a.dtype(), "mul", [&]<typename T>() {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* po = out.data<T>();
      for (int64_t i = 0; i < n; ++i) po[i] = pa[i] * pb[i];
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("mul", a);
    cuda::set_device(a.device().index);
    SK_KERNEL_CHECK(sk_cuda_mul(out.data_ptr(), a.data_ptr(), b.data_ptr(), n, kernel_dtype(a.dtype()), cuda::stream()));
#endif
  }
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  check_binary("add", a, b);
  Tensor out = axpby_forward(a.detach(), b.detach(), 1.0, 1.0);
  if (autograd::needs_grad({&a, &b}))
    autograd::record("add", {a, b}, {out}, [](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0], g[0]};
    });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  check_binary("sub", a, b);
  Tensor out = axpby_forward(a.detach(), b.detach(), 1.0, -1.0);
  if (autograd::needs_grad({&a, &b}))
    autograd::record("sub", {a, b}, {out}, [](const std::vector<Tensor>& g, const std::vector<bool>& needs) {
      return std::vector<Tensor>{g[0], needs[1] ? scale(g[0], -1.0) : Tensor()};
    });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_binary("mul", a, b);
  Tensor ad = a.detach(), bd = b.detach();
  Tensor out = mul_forward(ad, bd);
  if (autograd::needs_grad({&a, &b}))
    autograd::record("mul", {a, b}, {out}, [ad, bd](const std::vector<Tensor>& g, const std::vector<bool>& needs) {
      return std::vector<Tensor>{needs[0] ? mul_forward(g[0], bd) : Tensor(), needs[1] ? mul_forward(g[0], ad) : Tensor()};
    });
  return out;
}

Tensor scale(const Tensor& a, double alpha) {
  check_floating("scale", "a", a);
  Tensor out = axpby_forward(a.detach(), Tensor(), alpha, 0.0);
  if (autograd::needs_grad({&a}))
    autograd::record("scale", {a}, {out}, [alpha](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{scale(g[0], alpha)};
    });
  return out;
}

}  // namespace sk::ops
