// causal_attention (causal_attention.h): device dispatch of the full / sliding-window core.
#include "attention/causal_attention.h"

#include <spdlog/spdlog.h>

#include <atomic>

#include "attention/flash_attention.h"
#include "autograd/node.h"
#include "ops/op_common.h"

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

}  // namespace sk::attention
