// LayerNorm over the last dim, fused: one forward, one backward for (x, weight, bias).
//   x (N, C) after flattening the leading dims; weight (C); bias (C) or undefined.
//   Forward keeps mean (N) and rstd (N) in fp32 (f64 for f64 tensors) for the backward.
//   CPU reference: below (two-pass mean/variance, biased variance as PyTorch).
//   CUDA: kernels/ops/layernorm.cu (sk_cuda_layernorm_forward / _backward; dweight/dbias reduced
//   deterministically through a scratch buffer).
//   Backward: xhat = (x-mean) rstd, g = dy w; dx = rstd (g - mean(g) - xhat mean(g xhat));
//             dw = sum_n dy xhat; db = sum_n dy.
//   add_layernorm: the residual stream's add fused with the next LayerNorm: sum = x + r (rounded
//   to the dtype, exactly what add stores), y = layernorm(sum); backward dsum_total = dsum +
//   layernorm's dx (one pass; the gradient reaches x and r as that one tensor).
//   Tests: tests/ops/test_layernorm.cpp (Gradcheck.layernorm, Gradcheck.add_layernorm), CUDA parity.
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

// dres (N, C) or undefined: a gradient added to dx (the fused residual's).
std::vector<Tensor> layernorm_backward(const Tensor& dy_in, const LayerNormSaved& s, const Tensor& dres_in = Tensor()) {
  const int64_t N = s.x.size(0), C = s.x.size(1);
  Tensor dy = dy_in.contiguous().view({N, C});
  Tensor dres = dres_in.defined() ? dres_in.contiguous().view({N, C}) : Tensor();
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
      const T* pdres = dres.defined() ? dres.data<T>() : nullptr;
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
          if (pdres) pdx[n * C + c] += pdres[n * C + c];
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
    SK_KERNEL_CHECK(sk_cuda_layernorm_backward_add(
        dx.data_ptr(), dw.data_ptr(), s.has_bias ? db.data_ptr() : nullptr, scratch.data<float>(), dy.data_ptr(),
        dres.defined() ? dres.data_ptr() : nullptr, s.x.data_ptr(), s.weight.data_ptr(), s.mean.data<float>(),
        s.rstd.data<float>(), N, C, kernel_dtype(s.x.dtype()), cuda::stream()));
#endif
  }
  return {dx, dw, db};
}

void check_layernorm_args(const char* op, const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                          double eps) {
  check_floating(op, "x", x_in);
  check_floating(op, "weight", weight_in);
  SK_CHECK(x_in.ndim() >= 1, op, ": x must have at least one dim, got ", x_in.str());
  const int64_t C = x_in.size(-1);
  SK_CHECK(weight_in.shape() == Shape{C}, op, ": weight has shape ", shape_str(weight_in.shape()),
           ", expected (", C, ",) to match the last dim of x ", shape_str(x_in.shape()));
  check_same_device(op, "x", x_in, "weight", weight_in);
  check_same_dtype(op, "x", x_in, "weight", weight_in);
  if (bias_in.defined()) {
    SK_CHECK(bias_in.shape() == Shape{C}, op, ": bias has shape ", shape_str(bias_in.shape()), ", expected (", C, ",)");
    check_same_device(op, "x", x_in, "bias", bias_in);
    check_same_dtype(op, "x", x_in, "bias", bias_in);
  }
  SK_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
}

// y = layernorm(x) for contiguous x (N, C); fills y, mean, rstd. With addends lhs and rhs (N, C)
// (the fused residual add), x is first filled with lhs + rhs, rounded to the dtype as add rounds it.
void layernorm_forward(Tensor& x, const Tensor& lhs, const Tensor& rhs, const Tensor& w, const Tensor& b, double eps,
                       Tensor& y, Tensor& mean, Tensor& rstd) {
  const int64_t N = x.size(0), C = x.size(1);
  const bool has_bias = b.defined();
  if (x.device().is_cpu()) {
    dispatch_cpu_float(x.dtype(), "layernorm", [&]<typename T>() {
      if (rhs.defined()) {  // the sum in T, as add computes it
        const T* pa = lhs.data<T>();
        const T* pr = rhs.data<T>();
        T* ps = x.data<T>();
        for (int64_t i = 0; i < N * C; ++i) ps[i] = pa[i] + pr[i];
      }
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
    const bool add = rhs.defined();
    SK_KERNEL_CHECK(sk_cuda_add_layernorm_forward(
        y.data_ptr(), mean.data<float>(), rstd.data<float>(), add ? x.data_ptr() : nullptr,
        add ? lhs.data_ptr() : x.data_ptr(), add ? rhs.data_ptr() : nullptr, w.data_ptr(),
        has_bias ? b.data_ptr() : nullptr, N, C, float(eps), kernel_dtype(x.dtype()), cuda::stream()));
#endif
  }
}

}  // namespace

Tensor layernorm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, double eps) {
  check_layernorm_args("layernorm", x_in, weight_in, bias_in, eps);
  const int64_t C = x_in.size(-1);
  const int64_t N = C == 0 ? 0 : x_in.numel() / C;
  const bool has_bias = bias_in.defined();
  Tensor x = x_in.detach().contiguous().view({N, C});
  Tensor w = weight_in.detach().contiguous();
  Tensor b = has_bias ? bias_in.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({N, C}, x.dtype(), x.device());
  const DType stat_dt = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor mean = Tensor::empty({N}, stat_dt, x.device());
  Tensor rstd = Tensor::empty({N}, stat_dt, x.device());
  layernorm_forward(x, Tensor(), Tensor(), w, b, eps, y, mean, rstd);
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

AddLayerNorm add_layernorm(const Tensor& x_in, const Tensor& residual_in, const Tensor& weight_in,
                           const Tensor& bias_in, double eps, bool sum_is_output) {
  check_layernorm_args("add_layernorm", x_in, weight_in, bias_in, eps);
  check_same_shape("add_layernorm", "x", x_in, "residual", residual_in);
  check_same_device("add_layernorm", "x", x_in, "residual", residual_in);
  check_same_dtype("add_layernorm", "x", x_in, "residual", residual_in);
  const int64_t C = x_in.size(-1);
  const int64_t N = C == 0 ? 0 : x_in.numel() / C;
  const bool has_bias = bias_in.defined();
  Tensor a = x_in.detach().contiguous().view({N, C});
  Tensor r = residual_in.detach().contiguous().view({N, C});
  Tensor w = weight_in.detach().contiguous();
  Tensor b = has_bias ? bias_in.detach().contiguous() : Tensor();
  Tensor sum = Tensor::empty({N, C}, a.dtype(), a.device());
  Tensor y = Tensor::empty({N, C}, a.dtype(), a.device());
  const DType stat_dt = a.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor mean = Tensor::empty({N}, stat_dt, a.device());
  Tensor rstd = Tensor::empty({N}, stat_dt, a.device());
  layernorm_forward(sum, a, r, w, b, eps, y, mean, rstd);
  AddLayerNorm out{sum.view(x_in.shape()), y.view(x_in.shape())};
  if (autograd::needs_grad({&x_in, &residual_in, &weight_in, &bias_in})) {
    LayerNormSaved saved{sum, w, mean, rstd, has_bias};
    Shape xshape = x_in.shape();
    auto backward = [saved, xshape, sum_is_output](const std::vector<Tensor>& g, const std::vector<bool>&) {
      // g: (dy) or (dsum, dy). The sum's gradient is both inputs' gradient (one tensor).
      const Tensor& dy = sum_is_output ? g[1] : g[0];
      std::vector<Tensor> ln = layernorm_backward(dy, saved, sum_is_output ? g[0] : Tensor());
      Tensor dsum = ln[0].view(xshape);
      return std::vector<Tensor>{dsum, dsum, ln[1], ln[2]};
    };
    if (sum_is_output)
      autograd::record("add_layernorm", {x_in, residual_in, weight_in, bias_in}, {out.sum, out.y}, backward);
    else
      autograd::record("add_layernorm", {x_in, residual_in, weight_in, bias_in}, {out.y}, backward);
  }
  return out;
}

}  // namespace sk::ops
