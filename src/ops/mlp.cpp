// The transformer MLP as one op: y = gelu(x W1^T + b1) W2^T + b2.
//   x (..., C), fc_w W1 (F, C), fc_b b1 (F), fc2_w W2 (C2, F), fc2_b b2 (C2) -> y (..., C2).
//   Reference (CPU, and every case the fused path does not take: erf GELU, a missing bias, f64):
//   the composition linear -> gelu -> linear, each with its own backward.
//   CUDA, tanh GELU, f32/bf16, both biases: one autograd node over cuBLASLt epilogues
//   (matmul_impl.h), so the GELU needs no kernels of its own:
//     forward   pre = x W1^T + b1 and h = gelu(pre) from one GEMM (GELU_AUX_BIAS)
//               y = h W2^T + b2                                  (BIAS)
//     backward  dW2 = dy^T h, db2 = sum_rows(dy)
//               dpre = (dy W2) * gelu'(pre)                      (one GEMM, DGELU)
//               db1 = sum_rows(dpre), dW1 = dpre^T x, dx = dpre W1
//   (cuBLASLt's bias-gradient epilogues, DGELU_BGRAD and BGRADB, made the step slower on an H200:
//   docs/perf-notes.md.)
//   Where cuBLASLt has no algorithm for an epilogue (odd shapes), that piece falls back to the
//   separate ops (gelu kernels, sum_rows). Saved for backward: x, pre and h, as the composition.
//   Tests: tests/ops/test_mlp.cpp (Gradcheck.mlp_gelu), CudaParity.mlp_gelu.
#include <utility>

#include "autograd/node.h"
#include "ops/gelu_impl.h"
#include "ops/matmul_impl.h"
#include "ops/op_common.h"
#include "ops/ops.h"
#include "util/check.h"

namespace sk::ops {

namespace {

bool takes_fused_path(const Tensor& x, const Tensor& fc_b, const Tensor& fc2_b, GeluApprox approx) {
  return x.is_cuda() && approx == GeluApprox::Tanh && fc_b.defined() && fc2_b.defined() &&
         (x.dtype() == DType::F32 || x.dtype() == DType::BF16);
}

// h = gelu_tanh(x W1^T + b1) and pre = x W1^T + b1, x (N, C) contiguous.
std::pair<Tensor, Tensor> fc_gelu_forward(const Tensor& x, const Tensor& w1, const Tensor& b1) {
  const int64_t N = x.size(0), F = w1.size(0);
  Tensor pre = Tensor::empty({N, F}, x.dtype(), x.device());
  Tensor h = Tensor::empty({N, F}, x.dtype(), x.device());
  if (cublaslt_matmul_epilogue(h, x, w1.transpose(0, 1), {MatmulEpilogueKind::GeluTanhBias, b1, pre}))
    return {h, pre};
  pre = matmul_forward(x, w1.transpose(0, 1), b1);
  return {gelu_forward(pre, /*tanh_form=*/true), pre};
}

// dpre = (dy W2) * gelu_tanh'(pre).
Tensor dgelu_backward(const Tensor& dy, const Tensor& w2, const Tensor& pre) {
  Tensor dpre = Tensor::empty({dy.size(0), w2.size(1)}, dy.dtype(), dy.device());
  if (cublaslt_matmul_epilogue(dpre, dy, w2, {MatmulEpilogueKind::DGeluTanh, {}, pre})) return dpre;
  return gelu_backward(matmul_forward(dy, w2, Tensor()), pre, /*tanh_form=*/true);
}

}  // namespace

Tensor mlp_gelu(const Tensor& x_in, const Tensor& fc_w, const Tensor& fc_b, const Tensor& fc2_w, const Tensor& fc2_b,
                GeluApprox approx) {
  if (!takes_fused_path(x_in, fc_b, fc2_b, approx)) return linear(gelu(linear(x_in, fc_w, fc_b), approx), fc2_w, fc2_b);
  // The same argument checks as the composition would make, with this op's names.
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"fc_w", &fc_w}, {"fc_b", &fc_b},
                                {"fc2_w", &fc2_w}, {"fc2_b", &fc2_b}}) {
    check_same_device("mlp_gelu", "x", x_in, name, *t);
    check_same_dtype("mlp_gelu", "x", x_in, name, *t);
  }
  const int64_t C = x_in.size(-1), F = fc_w.size(0), C2 = fc2_w.size(0);
  SK_CHECK(fc_w.ndim() == 2 && fc_w.size(1) == C && fc_b.shape() == Shape{F} && fc2_w.ndim() == 2 &&
               fc2_w.size(1) == F && fc2_b.shape() == Shape{C2},
           "mlp_gelu: expected x (..., C), fc_w (F, C), fc_b (F), fc2_w (C2, F), fc2_b (C2); got x ",
           shape_str(x_in.shape()), ", fc_w ", shape_str(fc_w.shape()), ", fc_b ", shape_str(fc_b.shape()), ", fc2_w ",
           shape_str(fc2_w.shape()), ", fc2_b ", shape_str(fc2_b.shape()));
  const int64_t N = C == 0 ? 0 : x_in.numel() / C;
  const Tensor x = x_in.detach().contiguous().view({N, C});
  const Tensor w1 = fc_w.detach(), b1 = fc_b.detach().contiguous(), w2 = fc2_w.detach(), b2 = fc2_b.detach().contiguous();
  auto [h, pre] = fc_gelu_forward(x, w1, b1);  // (N, F) each
  Shape out_shape = x_in.shape();
  out_shape.back() = C2;
  Tensor y = matmul_forward(h, w2.transpose(0, 1), b2).view(out_shape);
  if (autograd::needs_grad({&x_in, &fc_w, &fc_b, &fc2_w, &fc2_b})) {
    const Shape xshape = x_in.shape();
    autograd::record("mlp_gelu", {x_in, fc_w, fc_b, fc2_w, fc2_b}, {y},
                     [x, w1, w2, h = h, pre = pre, xshape, N, C2](const std::vector<Tensor>& g,
                                                                  const std::vector<bool>& needs) {
                       const Tensor dy = g[0].contiguous().view({N, C2});
                       Tensor dx, dw1, db1, dw2, db2;
                       if (needs[3]) dw2 = matmul_forward(dy.transpose(0, 1), h, Tensor());
                       if (needs[4]) db2 = sum_rows(dy);
                       if (needs[0] || needs[1] || needs[2]) {
                         const Tensor dpre = dgelu_backward(dy, w2, pre);  // (N, F)
                         if (needs[2]) db1 = sum_rows(dpre);
                         if (needs[1]) dw1 = matmul_forward(dpre.transpose(0, 1), x, Tensor());
                         if (needs[0]) dx = matmul_forward(dpre, w1, Tensor()).view(xshape);
                       }
                       return std::vector<Tensor>{dx, dw1, db1, dw2, db2};
                     });
  }
  return y;
}

}  // namespace sk::ops
