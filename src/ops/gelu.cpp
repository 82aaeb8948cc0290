// GELU, erf and tanh forms: forward and backward.
//   CPU reference: gelu_forward_ref / gelu_backward_ref below (f32/f64).
//   CUDA: kernels/ops/gelu.cu (sk_cuda_gelu_forward / sk_cuda_gelu_backward; f32/bf16, fp32 math).
//   erf:  y = x/2 (1 + erf(x/sqrt2)),          y' = Phi(x) + x phi(x)
//   tanh: y = x/2 (1 + tanh(u)), u = s(x + a x^3), s = sqrt(2/pi), a = 0.044715,
//         y' = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) s (1 + 3 a x^2)
//   Tests: tests/ops/test_gelu.cpp (Gradcheck.gelu_tanh, Gradcheck.gelu_erf), CUDA parity.
#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/gelu_impl.h"
#include "ops/ops.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/gelu.h"
#endif

namespace sk::ops {

namespace {

template <typename T>
T gelu_value(T x, bool tanh_form) {
  if (tanh_form) {
    const T s = T(0.7978845608028654), a = T(0.044715);
    return T(0.5) * x * (T(1) + std::tanh(s * (x + a * x * x * x)));
  }
  return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476)));
}

template <typename T>
T gelu_derivative(T x, bool tanh_form) {
  if (tanh_form) {
    const T s = T(0.7978845608028654), a = T(0.044715);
    T t = std::tanh(s * (x + a * x * x * x));
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * s * (T(1) + T(3) * a * x * x);
  }
  T cdf = T(0.5) * (T(1) + std::erf(x * T(0.7071067811865476)));
  T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);
  return cdf + x * pdf;
}

}  // namespace

Tensor gelu_forward(const Tensor& x, bool tanh_form) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = x.numel();
  if (x.device().is_cpu()) {
    dispatch_cpu_float(x.dtype(), "gelu", [&]<typename T>() {
      const T* px = x.data<T>();
      T* py = y.data<T>();
      for (int64_t i = 0; i < n; ++i) py[i] = gelu_value(px[i], tanh_form);
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("gelu", x);
    cuda::set_device(x.device().index);
    SK_KERNEL_CHECK(sk_cuda_gelu_forward(y.data_ptr(), x.data_ptr(), n, tanh_form, kernel_dtype(x.dtype()), cuda::stream()));
#endif
  }
  return y;
}

Tensor gelu_backward(const Tensor& dy_in, const Tensor& x, bool tanh_form) {
  Tensor dy = dy_in.contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = x.numel();
  if (x.device().is_cpu()) {
    dispatch_cpu_float(x.dtype(), "gelu_backward", [&]<typename T>() {
      const T* px = x.data<T>();
      const T* pdy = dy.data<T>();
      T* pdx = dx.data<T>();
      for (int64_t i = 0; i < n; ++i) pdx[i] = pdy[i] * gelu_derivative(px[i], tanh_form);
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    cuda::set_device(x.device().index);
    SK_KERNEL_CHECK(sk_cuda_gelu_backward(dx.data_ptr(), dy.data_ptr(), x.data_ptr(), n, tanh_form,
                                          kernel_dtype(x.dtype()), cuda::stream()));
#endif
  }
  return dx;
}

Tensor gelu(const Tensor& x_in, GeluApprox approx) {
  check_floating("gelu", "x", x_in);
  const bool tanh_form = approx == GeluApprox::Tanh;
  Tensor x = x_in.detach().contiguous();
  Tensor y = gelu_forward(x, tanh_form);
  if (autograd::needs_grad({&x_in}))
    autograd::record(tanh_form ? "gelu_tanh" : "gelu_erf", {x_in}, {y},
                     [x, tanh_form](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{gelu_backward(g[0], x, tanh_form)};
                     });
  return y;
}

}  // namespace sk::ops
