// LayerNorm over the last dim, fused: one forward, one backward for (x, weight, bias).
//   x (N, C) after flattening the leading dims; weight (C); bias (C) or undefined.
//   Forward keeps mean (N) and rstd (N) in fp32 (f64 for f64 tensors) for the backward.
//   CPU reference: below (two-pass mean/variance, biased variance as PyTorch).
//   CUDA: kernels/ops/layernorm.cu (sk_cuda_layernorm_forward / _backward; dweight/dbias reduced
//   deterministically through a scratch buffer).
//   Backward: xhat = (x-mean) rstd, g = dy w; dx = rstd (g - mean(g) - xhat mean(g xhat));
//             dw = sum_n dy xhat; db = sum_n dy.
//   Tests: tests/ops/test_layernorm.cpp (Gradcheck.layernorm), CUDA parity.
#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/layernorm.h"
#endif

namespace sk::ops {

namespace {

struct LayerNormSaved {
  Tensor x, weight, mean, rstd;  // x (N, C) contiguous; mean, rstd (N) f32 (f64 on CPU f64)
  bool has_bias;
};

std::vector<Tensor> layernorm_backward(const Tensor& dy_in, const LayerNormSaved& s) {
  const int64_t N = s.x.size(0), C = s.x.size(1);
  Tensor dy = dy_in.contiguous().view({N, C});
  Tensor dx = Tensor::empty({N, C}, s.x.dtype(), s.x.device());
  Tensor dw = Tensor::empty({C}, s.x.dtype(), s.x.device());
  Tensor db = s.has_bias ? Tensor::empty({C}, s.x.dtype(), s.x.device()) : Tensor();
  if (s.x.device().is_cpu()) {
    dispatch_cpu_float(s.x.dtype(), "layernorm_backward", [&]<typename T>() {
      const T* px = s.x.data<T>();
      const T* pw = s.weight.data<T>();
      const T* pdy = dy.data<T>();
      const T* pm = s.mean.data<T>();
      const T* pr = s.rstd.data<T>();
      T* pdx = dx.data<T>();
      std::vector<T> dw_acc(C, T(0)), db_acc(C, T(0));
      for (int64_t n = 0; n < N; ++n) {
        const T* xr = px + n * C;
        const T* dyr = pdy + n * C;
        T mean_g = 0, mean_gx = 0;
        for (int64_t c = 0; c < C; ++c) {
          T xhat = (xr[c] - pm[n]) * pr[n];
          T g = dyr[c] * pw[c];
          mean_g += g;
          mean_gx += g * xhat;
          dw_acc[c] += dyr[c] * xhat;
          db_acc[c] += dyr[c];
        }
        mean_g /= T(C);
        mean_gx /= T(C);
        for (int64_t c = 0; c < C; ++c) {
          T xhat = (xr[c] - pm[n]) * pr[n];
          pdx[n * C + c] = pr[n] * (dyr[c] * pw[c] - mean_g - xhat * mean_gx);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        dw.data<T>()[c] = dw_acc[c];
        if (s.has_bias) db.data<T>()[c] = db_acc[c];
      }
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    cuda::set_device(s.x.device().index);
    Tensor scratch = Tensor::empty({static_cast<int64_t>(sk_cuda_layernorm_backward_scratch_floats(N, C))}, DType::F32,
                                   s.x.device());
    SK_KERNEL_CHECK(sk_cuda_layernorm_backward(dx.data_ptr(), dw.data_ptr(), s.has_bias ? db.data_ptr() : nullptr,
                                               scratch.data<float>(), dy.data_ptr(), s.x.data_ptr(),
                                               s.weight.data_ptr(), s.mean.data<float>(), s.rstd.data<float>(), N, C,
                                               kernel_dtype(s.x.dtype()), cuda::stream()));
#endif
  }
  return {dx, dw, db};
}

}  // namespace

Tensor layernorm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, double eps) {
  check_floating("layernorm", "x", x_in);
  check_floating("layernorm", "weight", weight_in);
  SK_CHECK(x_in.ndim() >= 1, "layernorm: x must have at least one dim, got ", x_in.str());
  const int64_t C = x_in.size(-1);
  const int64_t N = C == 0 ? 0 : x_in.numel() / C;
  SK_CHECK(weight_in.shape() == Shape{C}, "layernorm: weight has shape ", shape_str(weight_in.shape()),
           ", expected (", C, ",) to match the last dim of x ", shape_str(x_in.shape()));
  check_same_device("layernorm", "x", x_in, "weight", weight_in);
  check_same_dtype("layernorm", "x", x_in, "weight", weight_in);
  const bool has_bias = bias_in.defined();
  if (has_bias) {
    SK_CHECK(bias_in.shape() == Shape{C}, "layernorm: bias has shape ", shape_str(bias_in.shape()), ", expected (", C, ",)");
    check_same_device("layernorm", "x", x_in, "bias", bias_in);
    check_same_dtype("layernorm", "x", x_in, "bias", bias_in);
  }
  SK_CHECK(eps > 0, "layernorm: eps must be positive, got ", eps);

  Tensor x = x_in.detach().contiguous().view({N, C});
  Tensor w = weight_in.detach().contiguous();
  Tensor b = has_bias ? bias_in.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({N, C}, x.dtype(), x.device());
  const DType stat_dt = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor mean = Tensor::empty({N}, stat_dt, x.device());
  Tensor rstd = Tensor::empty({N}, stat_dt, x.device());

  if (x.device().is_cpu()) {
    dispatch_cpu_float(x.dtype(), "layernorm", [&]<typename T>() {
      const T* px = x.data<T>();
      const T* pw = w.data<T>();
      const T* pb = has_bias ? b.data<T>() : nullptr;
      T* py = y.data<T>();
      for (int64_t n = 0; n < N; ++n) {
        const T* xr = px + n * C;
        T m = 0;
        for (int64_t c = 0; c < C; ++c) m += xr[c];
        m /= T(C);
        T var = 0;
        for (int64_t c = 0; c < C; ++c) var += (xr[c] - m) * (xr[c] - m);
        var /= T(C);
        T r = T(1) / std::sqrt(var + T(eps));
        for (int64_t c = 0; c < C; ++c) py[n * C + c] = (xr[c] - m) * r * pw[c] + (pb ? pb[c] : T(0));
        mean.data<T>()[n] = m;
        rstd.data<T>()[n] = r;
      }
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("layernorm", x);
    cuda::set_device(x.device().index);
    SK_KERNEL_CHECK(sk_cuda_layernorm_forward(y.data_ptr(), mean.data<float>(), rstd.data<float>(), x.data_ptr(),
                                              w.data_ptr(), has_bias ? b.data_ptr() : nullptr, N, C, float(eps),
                                              kernel_dtype(x.dtype()), cuda::stream()));
#endif
  }
  Tensor out = y.view(x_in.shape());
  if (autograd::needs_grad({&x_in, &weight_in, &bias_in})) {
    LayerNormSaved saved{x, w, mean, rstd, has_bias};
    Shape xshape = x_in.shape();
    autograd::record("layernorm", {x_in, weight_in, bias_in}, {out},
                     [saved, xshape](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       std::vector<Tensor> grads = layernorm_backward(g[0], saved);
                       grads[0] = grads[0].view(xshape);
                       return grads;
                     });
  }
  return out;
}

}  // namespace sk::ops
