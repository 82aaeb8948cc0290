// Rotary position embeddings (rotary.h): CPU reference and CUDA dispatch.
#include "nn/rotary.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/nn/rotary.h"
#endif

namespace sk::nn {

namespace {

#ifdef SPARSEK_HAS_CUDA
// x: (B, H, T, D) on CUDA with the last dim contiguous (made so otherwise) -> contiguous out.
Tensor rotate_cuda(const Tensor& x_in, int64_t R, double base, int64_t offset, double sign) {
  ops::check_cuda_dtype("rotary", x_in);
  Tensor x = x_in.strides()[3] == 1 || x_in.size(3) == 1 ? x_in : x_in.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  cuda::set_device(x.device().index);
  auto launch = sign > 0 ? &sk_cuda_rotary_forward : &sk_cuda_rotary_backward;
  SK_KERNEL_CHECK(launch(out.data_ptr(), x.data_ptr(), x.size(0), x.size(1), x.size(2), x.size(3), x.strides()[0],
                         x.strides()[1], x.strides()[2], R, base, offset, kernel_dtype(x.dtype()), cuda::stream()));
  return out;
}
#endif

// sign = +1: rotate by +theta (forward); -1: by -theta (backward).
Tensor rotate(const Tensor& x_in, int64_t R, double base, int64_t offset, double sign) {
#ifdef SPARSEK_HAS_CUDA
  if (x_in.is_cuda()) return rotate_cuda(x_in, R, base, offset, sign);
#endif
  SK_CHECK(x_in.device().is_cpu(), "rotary: ", x_in.device().str(), " tensors in a CPU-only build");
  Tensor x = x_in.contiguous();
  Tensor out = x.clone();
  const int64_t T = x.size(2), D = x.size(3), BH = x.size(0) * x.size(1), half = R / 2;
  ops::dispatch_cpu_float(x.dtype(), "rotary", [&]<typename F>() {
    const F* px = x.data<F>();
    F* po = out.data<F>();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double theta = double(t + offset) * std::pow(base, -2.0 * double(i) / double(R));
        const F c = F(std::cos(theta)), s = F(sign * std::sin(theta));
        for (int64_t bh = 0; bh < BH; ++bh) {
          const int64_t row = (bh * T + t) * D;
          const F a = px[row + i], b = px[row + i + half];
          po[row + i] = a * c - b * s;
          po[row + i + half] = b * c + a * s;
        }
      }
  });
  return out;
}

}  // namespace

Tensor rotary(const Tensor& x, int64_t rotary_dims, double base, int64_t position_offset) {
  ops::check_floating("rotary", "x", x);
  SK_CHECK(x.ndim() == 4, "rotary: x must be (B, H, T, D), got ", shape_str(x.shape()));
  SK_CHECK(rotary_dims >= 0 && rotary_dims <= x.size(3) && rotary_dims % 2 == 0, "rotary: rotary_dims ", rotary_dims,
           " must be even and within the head dim ", x.size(3));
  SK_CHECK(position_offset >= 0, "rotary: negative position_offset ", position_offset);
  Tensor out = rotate(x.detach(), rotary_dims, base, position_offset, +1.0);
  if (autograd::needs_grad({&x}))
    autograd::record("rotary", {x}, {out},
                     [rotary_dims, base, position_offset](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{rotate(g[0], rotary_dims, base, position_offset, -1.0)};
                     });
  return out;
}

}  // namespace sk::nn
