// QkvProjection (qkv_projection.h): fused QKV projection, rotary, output projection.
#include "attention/qkv_projection.h"

#include <cmath>

#include "attention/causal_attention.h"
#include "nn/rotary.h"
#include "ops/ops.h"
#include "util/check.h"

namespace sk::attention {

QkvProjection::QkvProjection(const AttentionSpec& s, Rng& rng) : spec_(s) {
  const int64_t C = s.n_embd;
  const double std = 0.02, res_std = 0.02 / std::sqrt(2.0 * double(s.n_layer));
  auto normal = [&](const Shape& shape, double sd) {
    return Tensor::randn(shape, rng, s.dtype, s.device, 0.0, sd).set_requires_grad();
  };
  auto bias = [&](int64_t n) { return s.bias ? Tensor::zeros({n}, s.dtype, s.device).set_requires_grad() : Tensor(); };
  qkv_w_ = normal({3 * C, C}, std);
  qkv_b_ = bias(3 * C);
  proj_w_ = normal({C, C}, res_std);
  proj_b_ = bias(C);
  const int64_t R = s.rotary_dims();
  SK_CHECK(R % 2 == 0, "attention: rotary dims per head (head dim ", s.head_dim(), " x model.rotary_pct ",
           s.rotary_pct, " = ", R, ") must be even");
}

Tensor QkvProjection::packed(const Tensor& x) const {
  SK_CHECK(x.ndim() == 3 && x.size(2) == spec_.n_embd, "attention: x must be (B, T, ", spec_.n_embd, "), got ",
           shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1);
  return ops::linear(x, qkv_w_, qkv_b_).view({B, T, 3, spec_.n_head, spec_.head_dim()});  // [3, H, D] layout
}

QkvProjection::Heads QkvProjection::heads(const Tensor& x, int64_t position_offset) const {
  const Tensor qkv = packed(x);
  Heads h{packed_head(qkv, 0), packed_head(qkv, 1), packed_head(qkv, 2)};  // (B, H, T, D) views
  if (const int64_t R = spec_.rotary_dims(); R > 0) {
    h.q = nn::rotary(h.q, R, spec_.rotary_base, position_offset);
    h.k = nn::rotary(h.k, R, spec_.rotary_base, position_offset);
  }
  return h;
}

Tensor QkvProjection::output(const Tensor& o) const {
  const int64_t B = o.size(0), T = o.size(2);
  return ops::linear(o.transpose(1, 2).reshape({B, T, spec_.n_embd}), proj_w_, proj_b_);
}

std::vector<std::pair<std::string, Tensor>> QkvProjection::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> p;
  for (auto& [n, t] : std::vector<std::pair<std::string, Tensor>>{
           {"qkv_w", qkv_w_}, {"qkv_b", qkv_b_}, {"proj_w", proj_w_}, {"proj_b", proj_b_}})
    if (t.defined()) p.push_back({n, t});
  return p;
}

}  // namespace sk::attention
