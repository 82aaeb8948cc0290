// AdamW (adamw.h): CPU reference loop and CUDA dispatch to kernels/optim/adamw.cu.
#include "optim/adamw.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/optim/adamw.h"
#endif

namespace sk::optim {

void AdamW::add_param(const Tensor& p, bool decay) {
  SK_CHECK(p.defined() && p.is_leaf() && p.requires_grad(),
           "AdamW::add_param: parameters must be leaf tensors with requires_grad, got ", p.str());
  Slot s;
  s.param = p;
  s.decay = decay;
  if (p.device().is_cpu()) {
    SK_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, "AdamW on the CPU updates f32 or f64 parameters, got ",
             dtype_name(p.dtype()));
    s.m = Tensor::zeros(p.shape(), p.dtype(), p.device());
    s.v = Tensor::zeros(p.shape(), p.dtype(), p.device());
  } else {
    SK_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::BF16, "AdamW on CUDA updates f32 or bf16 parameters, got ",
             dtype_name(p.dtype()));
    SK_CHECK(p.is_contiguous(), "AdamW: CUDA parameters must be contiguous: ", p.str());
    if (p.dtype() == DType::BF16) s.master = p.detach().to(DType::F32);
    s.m = Tensor::zeros(p.shape(), DType::F32, p.device());
    s.v = Tensor::zeros(p.shape(), DType::F32, p.device());
  }
  slots_.push_back(s);
}

void AdamW::reload_masters() {
  autograd::NoGradGuard no_grad;
  for (Slot& s : slots_)
    if (s.master.defined()) s.master.copy_(s.param);
}

void AdamW::zero_grad() {
  for (Slot& s : slots_) s.param.zero_grad();
}

void AdamW::step(double lr_in, const Tensor& grad_scale) {
  const double lr = lr_in < 0 ? cfg_.lr : lr_in;
  ++step_;
  const double bc1 = 1.0 - std::pow(cfg_.beta1, double(step_));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, double(step_));
  autograd::NoGradGuard no_grad;
#ifdef SPARSEK_HAS_CUDA
  // CUDA parameters are updated together after the loop: one multi-tensor launch per device and
  // gradient dtype (a few launches per step instead of one per parameter).
  struct CudaGroup {
    int device;
    DType grad_dtype;
    std::vector<SkAdamwTensor> tensors;
    std::vector<Tensor> grads;  // the contiguous gradients, alive until the launch
  };
  std::vector<CudaGroup> groups;
#endif
  for (Slot& s : slots_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    SK_CHECK(g.device() == s.param.device(), "AdamW: gradient on ", g.device().str(), " for a parameter on ",
             s.param.device().str());
    if (grad_scale.defined())
      SK_CHECK(grad_scale.numel() == 1 && grad_scale.device() == s.param.device(),
               "AdamW: grad_scale must be a one-element tensor on ", s.param.device().str(), ", got ", grad_scale.str());
    const double wd = s.decay ? cfg_.weight_decay : 0.0;
    g = g.contiguous();
    if (s.param.device().is_cpu()) {
      const double gs = grad_scale.defined() ? grad_scale.item() : 1.0;
      ops::dispatch_cpu_float(s.param.dtype(), "adamw", [&]<typename T>() {
        T* p = s.param.data<T>();
        const T* gp = g.data<T>();
        T* m = s.m.data<T>();
        T* v = s.v.data<T>();
        const T b1 = T(cfg_.beta1), b2 = T(cfg_.beta2);
        for (int64_t i = 0; i < s.param.numel(); ++i) {
          const T gi = gp[i] * T(gs);
          p[i] *= T(1) - T(lr * wd);
          m[i] = b1 * m[i] + (T(1) - b1) * gi;
          v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
          const T denom = std::sqrt(v[i]) / T(std::sqrt(bc2)) + T(cfg_.eps);
          p[i] -= T(lr / bc1) * m[i] / denom;
        }
      });
    } else {
#ifdef SPARSEK_HAS_CUDA
      const int dev = s.param.device().index;
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const CudaGroup& cg) { return cg.device == dev && cg.grad_dtype == g.dtype(); });
      if (it == groups.end()) it = groups.insert(groups.end(), CudaGroup{dev, g.dtype(), {}, {}});
      float* master = s.master.defined() ? s.master.data<float>() : s.param.data<float>();
      void* bf16_copy = s.master.defined() ? s.param.data_ptr() : nullptr;
      it->tensors.push_back(SkAdamwTensor{master, bf16_copy, g.data_ptr(), s.m.data<float>(), s.v.data<float>(),
                                          s.param.numel(), float(wd)});
      it->grads.push_back(g);
#endif
    }
  }
#ifdef SPARSEK_HAS_CUDA
  for (const CudaGroup& cg : groups) {
    cuda::set_device(cg.device);
    Tensor gsf = grad_scale.defined() ? grad_scale.to(DType::F32) : Tensor();
    SK_KERNEL_CHECK(sk_cuda_adamw_step_multi(cg.tensors.data(), int(cg.tensors.size()), kernel_dtype(cg.grad_dtype),
                                             float(lr), float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps),
                                             float(bc1), float(bc2), gsf.defined() ? gsf.data<float>() : nullptr,
                                             cuda::stream()));
  }
#endif
}

void adamw_update_f32(const AdamWConfig& cfg, Tensor& master, const Tensor& grad, Tensor& m, Tensor& v, double lr,
                      double wd, int64_t step, const Tensor& grad_scale) {
  const int64_t n = master.numel();
  for (const Tensor* t : {static_cast<const Tensor*>(&master), &grad, static_cast<const Tensor*>(&m), static_cast<const Tensor*>(&v)})
    SK_CHECK(t->dtype() == DType::F32 && t->is_contiguous() && t->numel() == n && t->device() == master.device(),
             "adamw_update_f32: master, grad, m, v must be contiguous f32 of one length on one device, got ", t->str(),
             " for ", master.str());
  if (grad_scale.defined())
    SK_CHECK(grad_scale.numel() == 1 && grad_scale.device() == master.device(),
             "adamw_update_f32: grad_scale must be a one-element tensor on ", master.device().str());
  const double bc1 = 1.0 - std::pow(cfg.beta1, double(step));
  const double bc2 = 1.0 - std::pow(cfg.beta2, double(step));
  if (n == 0) return;
  if (master.device().is_cpu()) {
    using T = float;
    const double gs = grad_scale.defined() ? grad_scale.item() : 1.0;
    T* p = master.data<T>();
    const T* gp = grad.data<T>();
    T* mp = m.data<T>();
    T* vp = v.data<T>();
    const T b1 = T(cfg.beta1), b2 = T(cfg.beta2);
    for (int64_t i = 0; i < n; ++i) {
      const T gi = gp[i] * T(gs);
      p[i] *= T(1) - T(lr * wd);
      mp[i] = b1 * mp[i] + (T(1) - b1) * gi;
      vp[i] = b2 * vp[i] + (T(1) - b2) * gi * gi;
      const T denom = std::sqrt(vp[i]) / T(std::sqrt(bc2)) + T(cfg.eps);
      p[i] -= T(lr / bc1) * mp[i] / denom;
    }
    return;
  }
#ifdef SPARSEK_HAS_CUDA
  cuda::set_device(master.device().index);
  Tensor gsf = grad_scale.defined() ? grad_scale.to(DType::F32) : Tensor();
  SK_KERNEL_CHECK(sk_cuda_adamw_step(master.data<float>(), nullptr, grad.data_ptr(), kernel_dtype(grad.dtype()),
                                     m.data<float>(), v.data<float>(), n, float(lr), float(cfg.beta1),
                                     float(cfg.beta2), float(cfg.eps), float(wd), float(bc1), float(bc2),
                                     gsf.defined() ? gsf.data<float>() : nullptr, cuda::stream()));
#endif
}

}  // namespace sk::optim
