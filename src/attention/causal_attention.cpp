// causal_attention (causal_attention.h): device dispatch of the full / sliding-window core.
#include "attention/causal_attention.h"

#include <spdlog/spdlog.h>

#include <atomic>

#include "attention/flash_attention.h"
#include "autograd/node.h"
#include "ops/op_common.h"
#include "util/check.h"

namespace sk::attention {

namespace {

const char* op_name(CausalWindow mask) { return mask.window > 0 ? "attention_sliding_window" : "attention_full"; }

Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
  AttentionForward f = flash_attention_forward(q.detach(), k.detach(), v.detach(), mask);
  if (autograd::needs_grad({&q, &k, &v})) {
    Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
    // A detached handle of the output: holding the output itself would make a reference cycle
    // (output -> node -> closure -> output) that leaks if backward never runs.
    AttentionForward saved{f.out.detach(), f.lse};
    autograd::record(op_name(mask), {q, k, v}, {f.out},
                     [qd, kd, vd, saved, mask](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       AttentionGrads d = flash_attention_backward(g[0], qd, kd, vd, saved, mask);
                       return std::vector<Tensor>{d.dq, d.dk, d.dv};
                     });
  }
  return f.out;
}

// One autograd node from qkv to out: the backward fills one packed dqkv.
Tensor flash_attention_packed(const Tensor& qkv, CausalWindow mask) {
  const Tensor packed = qkv.detach();
  const Tensor q = packed_head(packed, 0), k = packed_head(packed, 1), v = packed_head(packed, 2);
  AttentionForward f = flash_attention_forward(q, k, v, mask);
  if (autograd::needs_grad({&qkv})) {
    AttentionForward saved{f.out.detach(), f.lse};  // detached: see flash_attention
    autograd::record(op_name(mask), {qkv}, {f.out},
                     [packed, q, k, v, saved, mask](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       Tensor dqkv = Tensor::empty(packed.shape(), packed.dtype(), packed.device());
                       flash_attention_backward_packed(g[0], q, k, v, saved, mask, dqkv);
                       return std::vector<Tensor>{dqkv};
                     });
  }
  return f.out;
}

// The CPU reference on f32 host copies; the conversions are differentiable, so the gradients come
// back to the device through the tape.
Tensor host_fallback(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn("attention: {} {} inputs with head dim {} are not taken by the fused CUDA kernels; computing the "
                 "attention core with the CPU reference (slow, for small test models)",
                 q.device().str(), dtype_name(q.dtype()), q.size(3));
  auto host = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::F32); };
  return attention_reference(host(q), host(k), host(v), mask).to(q.dtype()).to(q.device());
}

}  // namespace

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
  ops::check_same_device("attention", "q", q, "k", k);
  ops::check_same_device("attention", "q", q, "v", v);
  if (q.device().is_cpu()) return attention_reference(q, k, v, mask);
  ops::check_same_dtype("attention", "q", q, "k", k);
  ops::check_same_dtype("attention", "q", q, "v", v);
  if (flash_attention_supported(q)) return flash_attention(q, k, v, mask);
  return host_fallback(q, k, v, mask);
}

Tensor packed_head(const Tensor& qkv, int64_t i) {
  const int64_t B = qkv.size(0), T = qkv.size(1), H = qkv.size(3), D = qkv.size(4);
  return qkv.slice(2, i, i + 1).reshape({B, T, H, D}).transpose(1, 2);
}

Tensor causal_attention_packed(const Tensor& qkv, CausalWindow mask) {
  SK_CHECK(qkv.defined() && qkv.ndim() == 5 && qkv.size(2) == 3, "attention: packed qkv must be (B, T, 3, H, D), got ",
           qkv.defined() ? shape_str(qkv.shape()) : std::string("undefined"));
  if (qkv.is_cuda() && qkv.is_contiguous() && flash_attention_supported(packed_head(qkv.detach(), 0)))
    return flash_attention_packed(qkv, mask);
  return causal_attention(packed_head(qkv, 0), packed_head(qkv, 1), packed_head(qkv, 2), mask);
}

}  // namespace sk::attention
