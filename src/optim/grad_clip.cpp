// Global gradient norm and clipping (grad_clip.h): CPU reference and CUDA dispatch.
#include "optim/grad_clip.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/reduce.h"
#endif

namespace sk::optim {

GradNorm global_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  SK_CHECK(max_norm > 0, "global_grad_norm: max_norm must be positive, got ", max_norm);
  autograd::NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad().contiguous());
  Device dev = grads.empty() ? Device::cpu() : grads[0].device();
  for (const Tensor& g : grads)
    SK_CHECK(g.device() == dev, "global_grad_norm: gradients on ", dev.str(), " and ", g.device().str());
  if (dev.is_cpu()) {
    const DType dt = !grads.empty() && grads[0].dtype() == DType::F64 ? DType::F64 : DType::F32;
    double sumsq = 0;
    for (const Tensor& g : grads)
      ops::dispatch_cpu_float(g.dtype(), "global_grad_norm", [&]<typename T>() {
        for (int64_t i = 0; i < g.numel(); ++i) sumsq += double(g.data<T>()[i]) * double(g.data<T>()[i]);
      });
    const double norm = std::sqrt(sumsq);
    const double coef = std::min(1.0, max_norm / (norm + 1e-6));
    return {Tensor::full({}, sumsq, dt), Tensor::full({}, coef, dt)};
  }
#ifdef SPARSEK_HAS_CUDA
  cuda::set_device(dev.index);
  // All gradients of one dtype in one multi-tensor reduction (two launches, not two per tensor).
  Tensor acc = Tensor::zeros({}, DType::F32, dev);
  for (const DType dt : {DType::BF16, DType::F32}) {
    std::vector<const void*> ptrs;
    std::vector<int64_t> sizes;
    for (const Tensor& g : grads) {
      ops::check_cuda_dtype("global_grad_norm", g);
      if (g.dtype() != dt) continue;
      ptrs.push_back(g.data_ptr());
      sizes.push_back(g.numel());
    }
    if (ptrs.empty()) continue;
    const auto floats = static_cast<int64_t>(sk_cuda_sumsq_multi_scratch_floats(sizes.data(), int(sizes.size())));
    Tensor scratch = Tensor::empty({floats + 1}, DType::F32, dev);
    SK_KERNEL_CHECK(sk_cuda_sumsq_multi_accumulate(acc.data<float>(), scratch.data<float>(), ptrs.data(), sizes.data(),
                                                   int(ptrs.size()), kernel_dtype(dt), cuda::stream()));
  }
  Tensor coef = Tensor::empty({}, DType::F32, dev);
  SK_KERNEL_CHECK(sk_cuda_clip_coefficient(coef.data<float>(), acc.data<float>(), float(max_norm), cuda::stream()));
  return {acc, coef};
#else
  return {};
#endif
}

void scale_grads_(const std::vector<Tensor>& params, const Tensor& coefficient) {
  autograd::NoGradGuard no_grad;
  const double c = coefficient.item();
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    g.copy_(ops::scale(g, c));  // in place: holders of the gradient see the scaled values
  }
}

}  // namespace sk::optim

namespace sk::optim {
double GradNorm::norm() const { return std::sqrt(sumsq.item()); }
}  // namespace sk::optim
