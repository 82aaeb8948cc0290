// ZeRO-1 optimizer (zero_optimizer.h).
#include "dist/zero_optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autograd/node.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/ops/reduce.h"
#endif

namespace sk::dist {

namespace {
std::vector<int64_t> numels_of(const std::vector<Tensor>& params) {
  std::vector<int64_t> n;
  for (const Tensor& p : params) n.push_back(p.numel());
  return n;
}

// A CPU f32 tensor holding v[begin, end).
Tensor cpu_range(const std::vector<float>& v, int64_t begin, int64_t end) {
  Tensor t = Tensor::empty({end - begin}, DType::F32, Device::cpu());
  if (end > begin) std::memcpy(t.data_ptr(), v.data() + begin, size_t(end - begin) * sizeof(float));
  return t;
}
}  // namespace

ZeroOptimizer::ZeroOptimizer(Communicator& comm, const optim::AdamWConfig& cfg, const std::vector<Tensor>& params,
                             const std::vector<bool>& decay)
    : comm_(comm), cfg_(cfg), params_(params), decay_(decay),
      layout_(numels_of(params), comm.world_size(), kAlign) {
  SK_CHECK(params.size() == decay.size(), "ZeroOptimizer: ", params.size(), " parameters, ", decay.size(),
           " weight-decay flags");
  const Device dev = comm.device();
  for (const Tensor& p : params) {
    SK_CHECK(p.defined() && p.is_leaf() && p.requires_grad() && p.is_contiguous(),
             "ZeroOptimizer: parameters must be contiguous leaves with requires_grad, got ", p.str());
    SK_CHECK(p.device() == dev, "ZeroOptimizer: a parameter on ", p.device().str(), ", the communicator is on ",
             dev.str());
    SK_CHECK(p.dtype() == DType::F32 || (p.dtype() == DType::BF16 && !dev.is_cpu()),
             "ZeroOptimizer: parameters must be f32 (or bf16 on CUDA), got ", p.str());
  }
  m_ = Tensor::zeros({layout_.shard_size()}, DType::F32, dev);
  v_ = Tensor::zeros({layout_.shard_size()}, DType::F32, dev);
  master_ = Tensor::zeros({layout_.shard_size()}, DType::F32, dev);
  coef_ = Tensor::full({}, 1.0, DType::F32, dev);
  reload_masters();
}

void ZeroOptimizer::reload_masters() {
  autograd::NoGradGuard no_grad;
  const int r = comm_.rank();
  for (const ShardSegment& s : layout_.segments(r)) {
    const Tensor& p = params_[size_t(s.param)];
    master_.slice(0, s.shard_begin, s.shard_begin + s.count)
        .copy_(p.view({p.numel()}).slice(0, s.param_begin, s.param_begin + s.count));
  }
}

void ZeroOptimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

double ZeroOptimizer::reduce_gradients(double max_norm) {
  autograd::NoGradGuard no_grad;
  // The flat buffer lives from here to the end of step(): not during forward and backward, where
  // the activations make the peak (zeroed: the padding must be 0).
  flat_ = Tensor::zeros({layout_.padded_total()}, DType::F32, comm_.device());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    SK_CHECK(g.defined(), "ZeRO-1: parameter ", params_[i].str(), " has no gradient on rank ", comm_.rank(),
             " (every rank must produce every gradient)");
    const int64_t off = layout_.param_offset(int64_t(i));
    flat_.slice(0, off, off + g.numel()).view(g.shape()).copy_(g);
  }
  // In place: this rank's slice of the flat buffer receives its shard of the mean gradient.
  Tensor grad = own_slice();
  comm_.reduce_scatter_mean(flat_, grad);
  // This rank's sum of squares over its owned range (the padding is zero), then the global sum.
  const int64_t owned = layout_.owned_end(comm_.rank()) - layout_.owned_begin(comm_.rank());
  double local = 0;
  if (grad.device().is_cpu()) {
    const float* g = grad.data<float>();
    for (int64_t i = 0; i < owned; ++i) local += double(g[i]) * double(g[i]);
  } else {
#ifdef SPARSEK_HAS_CUDA
    if (owned > 0) {
      cuda::set_device(grad.device().index);
      Tensor acc = Tensor::zeros({}, DType::F32, grad.device());
      Tensor scratch = Tensor::empty({static_cast<int64_t>(sk_cuda_sumsq_scratch_floats(owned)) + 1}, DType::F32,
                                     grad.device());
      SK_KERNEL_CHECK(sk_cuda_sumsq_accumulate(acc.data<float>(), scratch.data<float>(), grad.data_ptr(), owned,
                                               kernel_dtype(DType::F32), cuda::stream()));
      local = acc.item();
    }
#endif
  }
  const double sumsq = comm_.sum_scalar(local);
  // As optim::global_grad_norm: the sum of squares is kept as f32, the coefficient computed from
  // the f64 norm.
  const double norm = std::sqrt(sumsq);
  const double coef = std::min(1.0, max_norm / (norm + 1e-6));
  coef_ = Tensor::full({}, coef, DType::F32, grad.device());
  return std::sqrt(double(float(sumsq)));
}

Tensor ZeroOptimizer::own_slice() const {
  const int64_t S = layout_.shard_size(), r = comm_.rank();
  return flat_.slice(0, r * S, (r + 1) * S);
}

void ZeroOptimizer::step(double lr) {
  SK_CHECK(flat_.defined(), "ZeroOptimizer::step without reduce_gradients first");
  autograd::NoGradGuard no_grad;
  ++step_;
  Tensor grads = own_slice();
  for (const ShardSegment& s : layout_.segments(comm_.rank())) {
    Tensor master = master_.slice(0, s.shard_begin, s.shard_begin + s.count);
    Tensor grad = grads.slice(0, s.shard_begin, s.shard_begin + s.count);
    Tensor m = m_.slice(0, s.shard_begin, s.shard_begin + s.count);
    Tensor v = v_.slice(0, s.shard_begin, s.shard_begin + s.count);
    const double wd = decay_[size_t(s.param)] ? cfg_.weight_decay : 0.0;
    optim::adamw_update_f32(cfg_, master, grad, m, v, lr, wd, step_, coef_);
  }
  // In place: the updated masters go into this rank's slice (the gradients there are used up),
  // then every rank's slice is gathered into the flat buffer.
  grads.copy_(master_);
  comm_.all_gather(grads, flat_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor p = params_[i];
    const int64_t off = layout_.param_offset(int64_t(i));
    p.copy_(flat_.slice(0, off, off + p.numel()).view(p.shape()));
  }
  flat_ = Tensor();
}

Tensor ZeroOptimizer::owned(const Tensor& shard) const {
  const int r = comm_.rank();
  return shard.slice(0, 0, layout_.owned_end(r) - layout_.owned_begin(r));
}
Tensor ZeroOptimizer::owned_m() const { return owned(m_); }
Tensor ZeroOptimizer::owned_v() const { return owned(v_); }
Tensor ZeroOptimizer::owned_master() const { return owned(master_); }

void ZeroOptimizer::load_full(int64_t step, const std::vector<float>& m, const std::vector<float>& v,
                              const std::vector<float>& master) {
  const int64_t total = layout_.total();
  SK_CHECK(int64_t(m.size()) == total && int64_t(v.size()) == total && int64_t(master.size()) == total,
           "ZeRO-1: the optimizer state has ", m.size(), "/", v.size(), "/", master.size(), " elements, the model ", total);
  autograd::NoGradGuard no_grad;
  const int r = comm_.rank();
  const int64_t b = layout_.owned_begin(r), e = layout_.owned_end(r);
  Tensor om = owned_m(), ov = owned_v(), oms = owned_master();
  om.copy_(cpu_range(m, b, e));
  ov.copy_(cpu_range(v, b, e));
  oms.copy_(cpu_range(master, b, e));
  step_ = step;
}

}  // namespace sk::dist
