// Reductions: sum (all elements -> scalar), mean, sum_rows ((..., C) -> (C), for bias gradients).
//   CPU reference below: accumulation in double. CUDA: kernels/ops/reduce.cu, fp32 accumulation,
//   deterministic two-stage reductions through a scratch buffer.
//   Backward: the gradient broadcast back (a stride-0 view of it, made contiguous).
//   Tests: tests/ops/test_reduce.cpp (Gradcheck.sum/mean/sum_rows), CUDA parity.
#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/reduce.h"
#endif

namespace sk::ops {

namespace {

// g broadcast to `shape`, where g's shape equals the trailing dims of `shape` (or g is a scalar).
Tensor broadcast_to(const Tensor& g, const Shape& shape) {
  Tensor gc = g.contiguous();
  Strides st(shape.size(), 0);
  const int64_t lead = static_cast<int64_t>(shape.size()) - gc.ndim();
  for (int64_t i = 0; i < gc.ndim(); ++i) st[lead + i] = gc.strides()[i];
  return make_view(gc, shape, st, gc.offset()).contiguous();
}

}  // namespace

Tensor sum(const Tensor& x_in) {
  check_floating("sum", "x", x_in);
  Tensor x = x_in.detach().contiguous();
  Tensor out;
  if (x.device().is_cpu()) {
    out = Tensor::empty({}, x.dtype(), x.device());
    dispatch_cpu_float(x.dtype(), "sum", [&]<typename T>() {
      double s = 0;
      for (int64_t i = 0; i < x.numel(); ++i) s += x.data<T>()[i];
      *out.data<T>() = T(s);
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("sum", x);
    cuda::set_device(x.device().index);
    Tensor acc = Tensor::empty({}, DType::F32, x.device());
    Tensor scratch = Tensor::empty({static_cast<int64_t>(sk_cuda_sum_scratch_floats(x.numel())) + 1}, DType::F32, x.device());
    SK_KERNEL_CHECK(sk_cuda_sum(acc.data<float>(), scratch.data<float>(), x.data_ptr(), x.numel(),
                                kernel_dtype(x.dtype()), cuda::stream()));
    out = acc.to(x.dtype());
#endif
  }
  if (autograd::needs_grad({&x_in})) {
    Shape shape = x_in.shape();
    autograd::record("sum", {x_in}, {out}, [shape](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{broadcast_to(g[0], shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x) {
  check_floating("mean", "x", x);
  SK_CHECK(x.numel() > 0, "mean of an empty tensor ", x.str());
  return scale(sum(x), 1.0 / double(x.numel()));
}

Tensor sum_rows(const Tensor& x_in) {
  check_floating("sum_rows", "x", x_in);
  SK_CHECK(x_in.ndim() >= 1, "sum_rows: x needs at least one dim, got ", x_in.str());
  const int64_t C = x_in.size(-1), N = C == 0 ? 0 : x_in.numel() / C;
  Tensor x = x_in.detach().contiguous();
  Tensor out = Tensor::empty({C}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_cpu_float(x.dtype(), "sum_rows", [&]<typename T>() {
      std::vector<double> acc(C, 0.0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) acc[c] += x.data<T>()[n * C + c];
      for (int64_t c = 0; c < C; ++c) out.data<T>()[c] = T(acc[c]);
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("sum_rows", x);
    cuda::set_device(x.device().index);
    Tensor scratch = Tensor::empty({static_cast<int64_t>(sk_cuda_sum_rows_scratch_floats(N, C)) + 1}, DType::F32, x.device());
    SK_KERNEL_CHECK(sk_cuda_sum_rows(out.data_ptr(), scratch.data<float>(), x.data_ptr(), N, C, kernel_dtype(x.dtype()),
                                     cuda::stream()));
#endif
  }
  if (autograd::needs_grad({&x_in})) {
    Shape shape = x_in.shape();
    autograd::record("sum_rows", {x_in}, {out}, [shape](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{broadcast_to(g[0], shape)};
    });
  }
  return out;
}

}  // namespace sk::ops
