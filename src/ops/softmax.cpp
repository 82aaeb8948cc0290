// Softmax over the last dim: y = exp(x - max) / sum exp(x - max).
//   CPU reference below (f32/f64); CUDA: kernels/ops/softmax.cu (f32/bf16, fp32 math).
//   Backward: dx = y (dy - sum_c dy y).
//   Tests: tests/ops/test_softmax.cpp (Gradcheck.softmax), CUDA parity.
#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/softmax.h"
#endif

namespace sk::ops {

namespace {

Tensor softmax_backward(const Tensor& dy_in, const Tensor& y) {
  const int64_t C = y.size(-1), N = C == 0 ? 0 : y.numel() / C;
  Tensor dy = dy_in.contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  if (y.device().is_cpu()) {
    dispatch_cpu_float(y.dtype(), "softmax_backward", [&]<typename T>() {
      for (int64_t n = 0; n < N; ++n) {
        const T* yr = y.data<T>() + n * C;
        const T* dyr = dy.data<T>() + n * C;
        T dot = 0;
        for (int64_t c = 0; c < C; ++c) dot += dyr[c] * yr[c];
        for (int64_t c = 0; c < C; ++c) dx.data<T>()[n * C + c] = yr[c] * (dyr[c] - dot);
      }
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    cuda::set_device(y.device().index);
    SK_KERNEL_CHECK(sk_cuda_softmax_backward(dx.data_ptr(), dy.data_ptr(), y.data_ptr(), N, C, kernel_dtype(y.dtype()),
                                             cuda::stream()));
#endif
  }
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& x_in) {
  check_floating("softmax", "x", x_in);
  SK_CHECK(x_in.ndim() >= 1, "softmax: x must have at least one dim, got ", x_in.str());
  Tensor x = x_in.detach().contiguous();
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_cpu_float(x.dtype(), "softmax", [&]<typename T>() {
      for (int64_t n = 0; n < N; ++n) {
        const T* xr = x.data<T>() + n * C;
        T* yr = y.data<T>() + n * C;
        T m = *std::max_element(xr, xr + C);
        T s = 0;
        for (int64_t c = 0; c < C; ++c) s += (yr[c] = std::exp(xr[c] - m));
        for (int64_t c = 0; c < C; ++c) yr[c] /= s;
      }
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("softmax", x);
    cuda::set_device(x.device().index);
    SK_KERNEL_CHECK(sk_cuda_softmax_forward(y.data_ptr(), x.data_ptr(), N, C, kernel_dtype(x.dtype()), cuda::stream()));
#endif
  }
  if (autograd::needs_grad({&x_in})) {
    // A detached handle: capturing y itself would be a cycle (y -> node -> closure -> y).
    Tensor saved_y = y.detach();
    autograd::record("softmax", {x_in}, {y}, [saved_y](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{softmax_backward(g[0], saved_y)};
    });
  }
  return y;
}

}  // namespace sk::ops
