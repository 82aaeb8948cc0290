// Gpt (gpt.h): parameters, initialisation and the forward pass, composed from differentiable
// ops, so the backward comes from the autograd tape.
#include "model/gpt.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/ops.h"
#include "util/check.h"

namespace sk::model {

Gpt::Gpt(const config::ModelConfig& m, const config::AttentionConfig& a, DType dt, Device dev, Rng& rng)
    : cfg_(m), attn_cfg_(a) {
  const int64_t C = m.n_embd, Vp = m.padded_vocab(), L = m.n_layer;
  auto normal = [&](const Shape& s, double std) { return Tensor::randn(s, rng, dt, dev, 0.0, std).set_requires_grad(); };
  auto constant = [&](const Shape& s, double v) { return Tensor::full(s, v, dt, dev).set_requires_grad(); };
  auto bias = [&](int64_t n) { return m.bias ? constant({n}, 0.0) : Tensor(); };
  const double std = 0.02, res_std = 0.02 / std::sqrt(2.0 * double(L));
  wte_ = normal({Vp, C}, std);
  if (m.learned_positions) wpe_ = normal({m.block_size, C}, std);
  for (int64_t l = 0; l < L; ++l) {
    Block b;
    b.ln1_w = constant({C}, 1.0);
    b.ln1_b = bias(C);
    b.attn = attention::make_attention(attention::AttentionSpec::from_config(m, a, l, dt, dev), rng);
    b.ln2_w = constant({C}, 1.0);
    b.ln2_b = bias(C);
    b.fc_w = normal({4 * C, C}, std);
    b.fc_b = bias(4 * C);
    b.fc2_w = normal({C, 4 * C}, res_std);
    b.fc2_b = bias(C);
    blocks_.push_back(b);
  }
  lnf_w_ = constant({C}, 1.0);
  lnf_b_ = bias(C);
  if (!m.tied_embeddings) lm_head_ = normal({Vp, C}, std);
}

std::vector<std::pair<std::string, Tensor>> Gpt::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> p{{"wte", wte_}};
  if (wpe_.defined()) p.push_back({"wpe", wpe_});
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    const std::string h = "h." + std::to_string(l) + ".";
    std::vector<std::pair<std::string, Tensor>> named{{"ln1_w", b.ln1_w}, {"ln1_b", b.ln1_b}};
    for (auto& nt : b.attn->named_parameters()) named.push_back(nt);
    for (auto& nt : std::vector<std::pair<std::string, Tensor>>{{"ln2_w", b.ln2_w}, {"ln2_b", b.ln2_b},
                                                               {"fc_w", b.fc_w}, {"fc_b", b.fc_b},
                                                               {"fc2_w", b.fc2_w}, {"fc2_b", b.fc2_b}})
      named.push_back(nt);
    for (auto& [n, t] : named)
      if (t.defined()) p.push_back({h + n, t});
  }
  p.push_back({"lnf_w", lnf_w_});
  if (lnf_b_.defined()) p.push_back({"lnf_b", lnf_b_});
  if (lm_head_.defined()) p.push_back({"lm_head", lm_head_});
  return p;
}

int64_t Gpt::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

Tensor Gpt::mlp_block(const Block& b, const Tensor& x) const {
  const ops::GeluApprox g = cfg_.gelu == "erf" ? ops::GeluApprox::Erf : ops::GeluApprox::Tanh;
  return ops::mlp_gelu(x, b.fc_w, b.fc_b, b.fc2_w, b.fc2_b, g);
}

double Gpt::train_flops_per_token(int64_t T) const {
  SK_CHECK(T >= 1, "train_flops_per_token: T must be >= 1, got ", T);
  double matmul_weights = 0;
  for (const auto& [name, t] : named_parameters())
    if (t.ndim() == 2 && name != "wpe" && (name != "wte" || !lm_head_.defined())) matmul_weights += double(t.numel());
  const int64_t H = cfg_.n_head, D = cfg_.n_embd / cfg_.n_head;
  double attention = 0;
  for (const Block& b : blocks_) {
    const int64_t keys = b.attn->keys_attended(T);
    attention += attention::attention_forward_flops(keys, 1, H, D) + attention::attention_backward_flops(keys, 1, H, D);
  }
  return 6.0 * matmul_weights + attention / double(T);
}

Tensor Gpt::forward(const Tensor& idx) const { return run(idx, nullptr); }

KvCache Gpt::new_cache(int64_t batch, int64_t max_positions) const {
  SK_CHECK(!wpe_.defined() || max_positions <= cfg_.block_size, "model: a cache of ", max_positions,
           " positions exceeds model.block_size ", cfg_.block_size, " (learned positions)");
  KvCache c;
  c.batch = batch;
  c.max_positions = max_positions;
  for (const Block& b : blocks_) c.layers.push_back(b.attn->new_cache(batch, max_positions));
  if (wpe_.defined()) {
    std::vector<int64_t> p(static_cast<size_t>(batch * max_positions));
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int64_t>(i) % max_positions;
    c.positions = Tensor::from_ints(p, {batch, max_positions}, DType::I32, wpe_.device());
  }
  return c;
}

Tensor Gpt::forward_step(const Tensor& idx, KvCache& cache) const {
  SK_CHECK(cache.layers.size() == blocks_.size(), "model: forward_step with a cache of ", cache.layers.size(),
           " layers for a model of ", blocks_.size(), " (make it with Gpt::new_cache)");
  autograd::NoGradGuard no_grad;
  Tensor logits = run(idx, &cache);
  cache.length += idx.size(1);
  return logits;
}

Tensor Gpt::run(const Tensor& idx, KvCache* cache) const {
  SK_CHECK(idx.ndim() == 2, "model: idx must be (B, T), got ", shape_str(idx.shape()));
  const int64_t B = idx.size(0), T = idx.size(1), start = cache ? cache->length : 0;
  SK_CHECK(!cache || B == cache->batch, "model: forward_step got a batch of ", B, " for a cache of ", cache->batch);
  SK_CHECK(!wpe_.defined() || start + T <= cfg_.block_size, "model: sequence length ", start + T,
           " exceeds model.block_size ", cfg_.block_size);
  // The residual stream is x + pending: each sublayer's output (and the position embedding) waits
  // in `pending` and is added by the next LayerNorm in one fused pass (ops::add_layernorm).
  Tensor x = ops::embedding(wte_, idx);  // (B, T, C)
  Tensor pending;                        // (B, T, C) or undefined
  if (wpe_.defined()) {
    // Position ids start .. start + T - 1 per row: a view of the cache's ids while decoding (no host
    // copy, no stream sync per step), else made here.
    const bool from_cache = cache && cache->positions.defined() && start + T <= cache->positions.size(1);
    const Tensor ids = from_cache ? cache->positions.slice(1, start, start + T)
                                  : Tensor::from_ints([&] {
                                      std::vector<int64_t> p(B * T);
                                      for (int64_t i = 0; i < B * T; ++i) p[i] = start + i % T;
                                      return p;
                                    }(), {B, T}, DType::I32, idx.device());
    pending = ops::embedding(wpe_, ids);
  }
  const double eps = cfg_.layernorm_eps;
  // LayerNorm of the stream after adding what is pending (x becomes the sum).
  auto norm = [&](const Tensor& w, const Tensor& b, bool last = false) {
    if (!pending.defined()) return ops::layernorm(x, w, b, eps);
    ops::AddLayerNorm r = ops::add_layernorm(x, pending, w, b, eps, /*sum_is_output=*/!last);
    x = r.sum;
    pending = Tensor();
    return r.y;
  };
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    auto attend = [&](const Tensor& h) {
      return cache ? b.attn->forward_step(h, *cache->layers[l]) : b.attn->forward(h);
    };
    if (cfg_.parallel_residual) {  // x + attn(ln1(x)) + mlp(ln2(x))
      const Tensor h1 = norm(b.ln1_w, b.ln1_b);
      pending = ops::add(attend(h1), mlp_block(b, ops::layernorm(x, b.ln2_w, b.ln2_b, eps)));
    } else {  // x + attn(ln1(x)), then + mlp(ln2(.))
      pending = attend(norm(b.ln1_w, b.ln1_b));
      pending = mlp_block(b, norm(b.ln2_w, b.ln2_b));
    }
  }
  x = norm(lnf_w_, lnf_b_, /*last=*/true);
  return ops::linear(x, lm_head_.defined() ? lm_head_ : wte_, Tensor());  // (B, T, Vp)
}

Tensor Gpt::loss(const Tensor& idx, const Tensor& targets) const {
  ops::CrossEntropyOptions o;
  o.valid_vocab = cfg_.vocab_size;
  return ops::cross_entropy(forward(idx), targets, o);
}

}  // namespace sk::model
