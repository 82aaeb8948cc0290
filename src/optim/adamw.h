// AdamW with decoupled weight decay, as PyTorch's torch.optim.AdamW (non-amsgrad):
//   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// State is fp32 (f64 for f64 parameters on the CPU). A bf16 parameter on CUDA gets an fp32 master
// copy here; the kernel updates the master and writes the bf16 working copy in the same pass.
// An optional device scalar multiplies every gradient first (gradient clipping without a host
// sync, see optim/grad_clip.h).
// CPU reference: adamw.cpp; CUDA: kernels/optim/adamw.cu. Tests: tests/optim/test_adamw.cpp.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace sk::optim {

struct AdamWConfig {
  double lr = 1e-3;            // base learning rate (step() may override per call)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // applied to params added with decay = true
};

class AdamW {
 public:
  explicit AdamW(const AdamWConfig& cfg) : cfg_(cfg) {}

  // p: a leaf that requires grad (f32/f64 on CPU; f32/bf16 on CUDA). A bf16 parameter's fp32
  // master is copied from it here: after writing the parameter yourself (loading weights), call
  // reload_masters() or the next step continues from the old master.
  void add_param(const Tensor& p, bool decay = true);
  // One update of every parameter that has a gradient. lr < 0 means cfg.lr. grad_scale: optional
  // scalar tensor on the parameters' device multiplying the gradients (e.g. a clip coefficient).
  void step(double lr = -1.0, const Tensor& grad_scale = Tensor());
  void zero_grad();
  void reload_masters();  // master = f32(param) for every bf16 parameter
  int64_t step_count() const { return step_; }
  const AdamWConfig& config() const { return cfg_; }

  struct Slot {
    Tensor param;   // the model's tensor (updated in place)
    Tensor master;  // fp32 master copy for bf16 params, else undefined (param is its own master)
    Tensor m, v;    // moments, fp32 (f64 for f64 params)
    bool decay = true;
  };
  std::vector<Slot>& slots() { return slots_; }
  const std::vector<Slot>& slots() const { return slots_; }
  void set_step_count(int64_t s) { step_ = s; }

 private:
  AdamWConfig cfg_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
};

// One AdamW update of a flat f32 range, the arithmetic of AdamW::step (bit-identical on the CPU):
// ZeRO-1 (dist/zero_optimizer.h) runs it on each parameter segment of its shard. master, grad, m, v:
// contiguous f32 tensors of one length on one device (CPU or CUDA); step: the step count after
// this update (bias corrections); grad_scale: optional one-element f32 tensor on that device.
void adamw_update_f32(const AdamWConfig& cfg, Tensor& master, const Tensor& grad, Tensor& m, Tensor& v, double lr,
                      double weight_decay, int64_t step, const Tensor& grad_scale = Tensor());

}  // namespace sk::optim
