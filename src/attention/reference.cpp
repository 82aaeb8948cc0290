// CPU reference attention, full and sliding window (reference.h). Plain loops over (b, h, i, j),
// accumulation in the tensor's type (f64 for gradchecks).
//   forward:  a_ij = s q_i.k_j for visible j; lse_i = log sum_j exp(a_ij); o_i = sum_j p_ij v_j,
//             p_ij = exp(a_ij - lse_i)
//   backward: dv_j = sum_i p_ij do_i;  dp_ij = do_i.v_j;  D_i = do_i.o_i;
//             ds_ij = p_ij (dp_ij - D_i);  dq_i = s sum_j ds_ij k_j;  dk_j = s sum_i ds_ij q_i
#include "attention/reference.h"

#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "util/check.h"

namespace sk::attention {

namespace {

void check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
  ops::check_floating("attention", "q", q);
  ops::check_same_shape("attention", "q", q, "k", k);
  ops::check_same_shape("attention", "q", q, "v", v);
  ops::check_same_dtype("attention", "q", q, "k", k);
  ops::check_same_dtype("attention", "q", q, "v", v);
  SK_CHECK(q.ndim() == 4, "attention: q, k, v must be (B, H, T, D), got ", shape_str(q.shape()));
  SK_CHECK(q.device().is_cpu(), "attention_reference runs on the CPU, got ", q.device().str());
  SK_CHECK(mask.window >= 0, "attention: window must be >= 0 (0 = full), got ", mask.window);
}

}  // namespace

AttentionForward attention_reference_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                             CausalWindow mask) {
  check_qkv(q_in, k_in, v_in, mask);
  Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  AttentionForward f{Tensor::empty(q.shape(), q.dtype()), Tensor::empty({B, H, T}, q.dtype())};
  ops::dispatch_cpu_float(q.dtype(), "attention_reference", [&]<typename F>() {
    const F s = F(1) / std::sqrt(F(D));
    std::vector<F> a(T);
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const F* Q = q.data<F>() + bh * T * D;
      const F* K = k.data<F>() + bh * T * D;
      const F* V = v.data<F>() + bh * T * D;
      F* O = f.out.data<F>() + bh * T * D;
      F* L = f.lse.data<F>() + bh * T;
      for (int64_t i = 0; i < T; ++i) {
        const int64_t j0 = mask.first_key(i);
        F m = -std::numeric_limits<F>::infinity();
        for (int64_t j = j0; j <= i; ++j) {
          F dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += Q[i * D + d] * K[j * D + d];
          a[j] = s * dot;
          m = std::max(m, a[j]);
        }
        F sum = 0;
        for (int64_t j = j0; j <= i; ++j) sum += std::exp(a[j] - m);
        const F lse = m + std::log(sum);
        L[i] = lse;
        for (int64_t d = 0; d < D; ++d) O[i * D + d] = 0;
        for (int64_t j = j0; j <= i; ++j) {
          const F p = std::exp(a[j] - lse);
          for (int64_t d = 0; d < D; ++d) O[i * D + d] += p * V[j * D + d];
        }
      }
    }
  });
  return f;
}

AttentionGrads attention_reference_backward(const Tensor& dout_in, const Tensor& q_in, const Tensor& k_in,
                                            const Tensor& v_in, const AttentionForward& fwd, CausalWindow mask) {
  check_qkv(q_in, k_in, v_in, mask);
  Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous(), dout = dout_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  AttentionGrads g{Tensor::zeros(q.shape(), q.dtype()), Tensor::zeros(q.shape(), q.dtype()),
                   Tensor::zeros(q.shape(), q.dtype())};
  ops::dispatch_cpu_float(q.dtype(), "attention_reference_backward", [&]<typename F>() {
    const F s = F(1) / std::sqrt(F(D));
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t off = bh * T * D;
      const F *Q = q.data<F>() + off, *K = k.data<F>() + off, *V = v.data<F>() + off;
      const F *O = fwd.out.data<F>() + off, *dO = dout.data<F>() + off, *L = fwd.lse.data<F>() + bh * T;
      F *dQ = g.dq.data<F>() + off, *dK = g.dk.data<F>() + off, *dV = g.dv.data<F>() + off;
      for (int64_t i = 0; i < T; ++i) {
        F Di = 0;
        for (int64_t d = 0; d < D; ++d) Di += dO[i * D + d] * O[i * D + d];
        for (int64_t j = mask.first_key(i); j <= i; ++j) {
          F dot = 0, dp = 0;
          for (int64_t d = 0; d < D; ++d) {
            dot += Q[i * D + d] * K[j * D + d];
            dp += dO[i * D + d] * V[j * D + d];
          }
          const F p = std::exp(s * dot - L[i]);
          const F ds = p * (dp - Di);
          for (int64_t d = 0; d < D; ++d) {
            dV[j * D + d] += p * dO[i * D + d];
            dQ[i * D + d] += s * ds * K[j * D + d];
            dK[j * D + d] += s * ds * Q[i * D + d];
          }
        }
      }
    }
  });
  return g;
}

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
  AttentionForward f = attention_reference_forward(q.detach(), k.detach(), v.detach(), mask);
  if (autograd::needs_grad({&q, &k, &v})) {
    Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
    // The closure keeps a detached handle of the output: holding the output itself would make a
    // reference cycle (output -> node -> closure -> output) that leaks if backward never runs.
    AttentionForward saved{f.out.detach(), f.lse};
    autograd::record(mask.window > 0 ? "attention_sliding_window" : "attention_full", {q, k, v}, {f.out},
                     [qd, kd, vd, saved, mask](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       AttentionGrads d = attention_reference_backward(g[0], qd, kd, vd, saved, mask);
                       return std::vector<Tensor>{d.dq, d.dk, d.dv};
                     });
  }
  return f.out;
}

}  // namespace sk::attention
