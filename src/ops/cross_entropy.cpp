// Fused softmax + cross-entropy over a large, possibly padded vocabulary.
//   logits (N, Vp) after flattening the leading dims (Vp >= V = valid_vocab; the padding columns
//   are ignored and get zero gradient), targets (N) i32/i64.
//   Forward: lse[n] = log sum_{j<V} exp(logits[n, j]); loss[n] = lse[n] - logits[n, target[n]]
//   (0 for ignore_index rows). Only lse (N) is kept: no probabilities are stored.
//   Backward: dlogits[n, j] = (exp(logits[n, j] - lse[n]) - [j == target]) * dloss[n], recomputed
//   from the logits. Sum is the sum op on the per-row losses; Mean divides by the count of
//   non-ignored rows (on CUDA counted on the device: kernels/ops/cross_entropy_mean.cu).
//   CUDA, Mean, logits given up by the caller (the rvalue overload) and needing a gradient: one
//   fused pass computes the loss and writes the gradient over the logits (for an upstream gradient
//   of 1; the backward rescales otherwise, one rounding more than the separate passes): the logits
//   are read once instead of three times.
//   CPU reference below (f32/f64, fp64 accumulation for f32); CUDA: kernels/ops/cross_entropy.cu.
//   Tests: tests/ops/test_cross_entropy.cpp (Gradcheck.cross_entropy, bad target), CUDA parity.
#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"
#include "util/env.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "backend/deferred_checks.h"
#include "kernels/ops/cross_entropy.h"
#include "kernels/ops/cross_entropy_mean.h"
#endif

namespace sk::ops {

namespace {

struct CeSaved {
  Tensor logits;   // (N, Vp) contiguous
  Tensor lse;      // (N) f32 (f64 for f64 logits)
  Tensor targets;  // (N) contiguous, on the logits' device
  int64_t V, ignore_index;
};

Tensor cross_entropy_backward(const Tensor& dlosses_in, const CeSaved& s) {
  const int64_t N = s.logits.size(0), Vp = s.logits.size(1);
  // The gradient overwrites the saved logits when nothing but this node holds them (the usual case
  // in training: the output projection feeds the loss and is not kept), which saves one (N, Vp)
  // buffer at the step's memory peak, the start of backward. Safe in place: each element is read
  // before it is written, by the same thread (CUDA) or loop iteration (CPU), and never again.
  const bool reuse_logits = s.logits.impl().use_count() == 1 && s.logits.impl()->storage.use_count() == 1;
  Tensor dlogits = reuse_logits ? s.logits : Tensor::empty({N, Vp}, s.logits.dtype(), s.logits.device());
  if (s.logits.device().is_cpu()) {
    Tensor dl = dlosses_in.contiguous();
    dispatch_cpu_float(s.logits.dtype(), "cross_entropy_backward", [&]<typename T>() {
      for (int64_t n = 0; n < N; ++n) {
        const T* row = s.logits.data<T>() + n * Vp;
        T* drow = dlogits.data<T>() + n * Vp;
        const int64_t t = index_at(s.targets, n);
        const T g = t == s.ignore_index ? T(0) : dl.data<T>()[n];
        const T lse = s.lse.data<T>()[n];
        for (int64_t j = 0; j < Vp; ++j)
          drow[j] = j < s.V ? (std::exp(row[j] - lse) - T(j == t ? 1 : 0)) * g : T(0);
      }
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    cuda::set_device(s.logits.device().index);
    Tensor dl = dlosses_in.to(DType::F32).contiguous();
    SK_KERNEL_CHECK(sk_cuda_cross_entropy_backward(dlogits.data_ptr(), s.logits.data_ptr(), s.lse.data<float>(),
                                                   s.targets.data_ptr(), kernel_dtype(s.targets.dtype()),
                                                   dl.data<float>(), 1.0f, N, s.V, Vp, static_cast<int>(s.ignore_index),
                                                   kernel_dtype(s.logits.dtype()), cuda::stream()));
#endif
  }
  return dlogits;
}

#ifdef SPARSEK_HAS_CUDA
// The kernels raise `flag` for a target outside [0, V) that is not ignore_index; checked at the
// next host sync (backend/deferred_checks.h), so the forward does not wait.
void defer_target_check(const Tensor& flag, const Tensor& targets, int64_t V, int64_t ignore_index) {
  const int64_t N = targets.numel();
  cuda::defer_error_check(flag.data<int32_t>(), flag.device().index, flag.impl()->storage,
                          [targets, N, V, ignore_index] {
                            Tensor host = targets.to(Device::cpu());
                            for (int64_t n = 0; n < N; ++n) {
                              int64_t t = index_at(host, n);
                              SK_CHECK(t == ignore_index || (t >= 0 && t < V), "cross_entropy: target ", t, " at row ",
                                       n, " is out of range for a vocabulary of ", V, " (ignore_index ", ignore_index,
                                       ")");
                            }
                          });
}
#endif

// Per-row losses (N) in f32 (f64 for f64 logits), with autograd.
Tensor cross_entropy_rows(const Tensor& logits_in, const Tensor& targets_in, int64_t V, int64_t ignore_index) {
  const int64_t Vp = logits_in.size(-1), N = Vp == 0 ? 0 : logits_in.numel() / Vp;
  Tensor logits = logits_in.detach().contiguous().view({N, Vp});
  Tensor targets = targets_in.contiguous().view({N});
  const DType loss_dt = logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor losses = Tensor::empty({N}, loss_dt, logits.device());
  Tensor lse = Tensor::empty({N}, loss_dt, logits.device());
  if (logits.device().is_cpu()) {
    for (int64_t n = 0; n < N; ++n) {
      int64_t t = index_at(targets, n);
      SK_CHECK(t == ignore_index || (t >= 0 && t < V), "cross_entropy: target ", t, " at row ", n,
               " is out of range for a vocabulary of ", V, " (ignore_index ", ignore_index, ")");
    }
    dispatch_cpu_float(logits.dtype(), "cross_entropy", [&]<typename T>() {
      for (int64_t n = 0; n < N; ++n) {
        const T* row = logits.data<T>() + n * Vp;
        double m = -INFINITY;
        for (int64_t j = 0; j < V; ++j) m = std::max(m, double(row[j]));
        double s = 0;
        for (int64_t j = 0; j < V; ++j) s += std::exp(double(row[j]) - m);
        const double l = m + std::log(s);
        const int64_t t = index_at(targets, n);
        lse.data<T>()[n] = T(l);
        losses.data<T>()[n] = t == ignore_index ? T(0) : T(l - double(row[t]));
      }
    });
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("cross_entropy", logits);
    cuda::set_device(logits.device().index);
    Tensor flag = Tensor::zeros({1}, DType::I32, logits.device());
    SK_KERNEL_CHECK(sk_cuda_cross_entropy_forward(losses.data<float>(), lse.data<float>(), logits.data_ptr(),
                                                  targets.data_ptr(), kernel_dtype(targets.dtype()), N, V, Vp,
                                                  static_cast<int>(ignore_index), kernel_dtype(logits.dtype()),
                                                  flag.data<int32_t>(), cuda::stream()));
    defer_target_check(flag, targets, V, ignore_index);
#endif
  }
  if (autograd::needs_grad({&logits_in})) {
    CeSaved saved{logits, lse, targets, V, ignore_index};
    Shape lshape = logits_in.shape();
    autograd::record("cross_entropy", {logits_in, Tensor()}, {losses},
                     [saved, lshape](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{cross_entropy_backward(g[0], saved).view(lshape), Tensor()};
                     });
  }
  return losses;
}


// Mean of the per-row losses over the rows whose target is not ignore_index, counted on the
// device (kernels/ops/cross_entropy_mean.cu): no host sync. losses (N) f32, targets (N).
Tensor mean_over_targets_cuda(const Tensor& losses, const Tensor& targets, int64_t ignore_index) {
#ifdef SPARSEK_HAS_CUDA
  cuda::set_device(losses.device().index);
  const int64_t N = losses.numel();
  Tensor out = Tensor::empty({}, DType::F32, losses.device());
  Tensor inv_count = Tensor::empty({}, DType::F32, losses.device());
  Tensor l = losses.detach().contiguous();
  SK_KERNEL_CHECK(sk_cuda_cross_entropy_mean_forward(out.data<float>(), inv_count.data<float>(), l.data<float>(),
                                                     targets.data_ptr(), kernel_dtype(targets.dtype()), N,
                                                     static_cast<int>(ignore_index), cuda::stream()));
  if (autograd::needs_grad({&losses}))
    autograd::record("cross_entropy_mean", {losses, Tensor()}, {out},
                     [inv_count, N](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       Tensor gf = g[0].to(DType::F32).contiguous();
                       Tensor dl = Tensor::empty({N}, DType::F32, gf.device());
                       SK_KERNEL_CHECK(sk_cuda_cross_entropy_mean_backward(dl.data<float>(), gf.data<float>(),
                                                                           inv_count.data<float>(), N, cuda::stream()));
                       return std::vector<Tensor>{dl, Tensor()};
                     });
  return out;
#else
  SK_FAIL("cross_entropy on CUDA: this build has no CUDA");
#endif
}

#ifdef SPARSEK_HAS_CUDA
// Mean loss and its gradient in one pass over contiguous CUDA logits (N, Vp) whose memory nothing
// else holds: the gradient (for an upstream gradient of 1) replaces the logits during the forward;
// the backward hands that buffer on, rescaled on the device when the upstream gradient is not 1.
Tensor cross_entropy_mean_fused_cuda(const Tensor& logits_in, const Tensor& targets_in, int64_t V,
                                     int64_t ignore_index) {
  const int64_t Vp = logits_in.size(-1), N = logits_in.numel() / Vp;
  Tensor logits = logits_in.detach().view({N, Vp});
  Tensor targets = targets_in.contiguous().view({N});
  cuda::set_device(logits.device().index);
  Tensor losses = Tensor::empty({N}, DType::F32, logits.device());
  Tensor lse = Tensor::empty({N}, DType::F32, logits.device());
  Tensor inv_count = Tensor::empty({}, DType::F32, logits.device());
  Tensor out = Tensor::empty({}, DType::F32, logits.device());
  Tensor flag = Tensor::zeros({1}, DType::I32, logits.device());
  const int tdt = kernel_dtype(targets.dtype());
  SK_KERNEL_CHECK(sk_cuda_cross_entropy_inv_count(inv_count.data<float>(), targets.data_ptr(), tdt, N,
                                                  static_cast<int>(ignore_index), cuda::stream()));
  SK_KERNEL_CHECK(sk_cuda_cross_entropy_mean_fused(losses.data<float>(), lse.data<float>(), logits.data_ptr(),
                                                   targets.data_ptr(), tdt, inv_count.data<float>(), N, V, Vp,
                                                   static_cast<int>(ignore_index), kernel_dtype(logits.dtype()),
                                                   flag.data<int32_t>(), cuda::stream()));
  defer_target_check(flag, targets, V, ignore_index);
  SK_KERNEL_CHECK(sk_cuda_cross_entropy_mean_forward(out.data<float>(), inv_count.data<float>(), losses.data<float>(),
                                                     targets.data_ptr(), tdt, N, static_cast<int>(ignore_index),
                                                     cuda::stream()));
  Shape lshape = logits_in.shape();
  autograd::record("cross_entropy_mean_fused", {logits_in, Tensor()}, {out},
                   [dlogits = logits, lshape](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     Tensor gf = g[0].to(DType::F32).contiguous();
                     SK_KERNEL_CHECK(sk_cuda_cross_entropy_rescale(dlogits.data_ptr(), dlogits.numel(),
                                                                   gf.data<float>(), kernel_dtype(dlogits.dtype()),
                                                                   cuda::stream()));
                     return std::vector<Tensor>{dlogits.view(lshape), Tensor()};
                   });
  return out;
}
#endif

// The argument checks of both overloads; returns the valid vocabulary V.
int64_t check_cross_entropy_args(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts) {
  check_floating("cross_entropy", "logits", logits);
  check_defined("cross_entropy", "targets", targets);
  SK_CHECK(targets.dtype() == DType::I32 || targets.dtype() == DType::I64,
           "cross_entropy: targets must be i32 or i64, got ", dtype_name(targets.dtype()));
  check_same_device("cross_entropy", "logits", logits, "targets", targets);
  SK_CHECK(logits.ndim() >= 1, "cross_entropy: logits must have a vocabulary dim, got ", logits.str());
  Shape expect = logits.shape();
  expect.pop_back();
  SK_CHECK(targets.shape() == expect, "cross_entropy: targets have shape ", shape_str(targets.shape()),
           " but logits ", shape_str(logits.shape()), " need ", shape_str(expect));
  const int64_t Vp = logits.size(-1);
  const int64_t V = opts.valid_vocab < 0 ? Vp : opts.valid_vocab;
  SK_CHECK(V >= 1 && V <= Vp, "cross_entropy: valid_vocab ", opts.valid_vocab, " must be in [1, ", Vp, "]");
  return V;
}

}  // namespace

Tensor cross_entropy(Tensor&& logits, const Tensor& targets, const CrossEntropyOptions& opts) {
#ifdef SPARSEK_HAS_CUDA
  const bool sole_owner = logits.defined() && logits.impl().use_count() == 1 &&
                          logits.impl()->storage.use_count() == 1 && logits.is_contiguous() && logits.offset() == 0;
  // SPARSEK_CE_FUSED=off keeps the separate forward and backward passes (to measure one against the other).
  static const bool fused_allowed = util::env_choice("SPARSEK_CE_FUSED", {"on", "off"}) == 0;
  if (fused_allowed && sole_owner && opts.reduction == Reduction::Mean && logits.device().is_cuda() && logits.ndim() >= 1 &&
      logits.numel() > 0 && autograd::needs_grad({&logits})) {
    const int64_t V = check_cross_entropy_args(logits, targets, opts);
    check_cuda_dtype("cross_entropy", logits);
    Tensor given = std::move(logits);
    return cross_entropy_mean_fused_cuda(given, targets, V, opts.ignore_index);
  }
#endif
  return cross_entropy(static_cast<const Tensor&>(logits), targets, opts);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts) {
  const int64_t V = check_cross_entropy_args(logits, targets, opts);
  Shape expect = logits.shape();
  expect.pop_back();

  Tensor rows = cross_entropy_rows(logits, targets, V, opts.ignore_index);
  if (opts.reduction == Reduction::None) return rows.view(expect);
  if (opts.reduction == Reduction::Sum) return sum(rows);
  // Mean over the rows that are not ignored.
  if (rows.device().is_cuda()) return mean_over_targets_cuda(rows, targets.contiguous().view({-1}), opts.ignore_index);
  Tensor total = sum(rows);
  Tensor host_targets = targets.contiguous();
  int64_t count = 0;
  for (int64_t i = 0; i < host_targets.numel(); ++i) count += index_at(host_targets, i) != opts.ignore_index;
  return scale(total, count > 0 ? 1.0 / double(count) : 0.0);
}

}  // namespace sk::ops
