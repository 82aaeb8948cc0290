// The `sparsek` attention kind (attention-spec.md section 4; docs/SPARSEK.md): a module of the
// attention interface (attention.h) owning the QKV/output projections (QkvProjection, rotary
// included) and the scoring network (scorer.h: "score_w" (Hu, C), "score_b" (Hu), Hu = H or 1 with
// attention.shared_selection). Core: on the CPU the reference sparsek_attention_reference (one
// autograd function of q, k, v and the scores); on CUDA with bf16 and head dim 64 or 128 the fused
// kernels (sparsek_cuda.h, one autograd node of q, k, v, u); other CUDA cases run the reference on
// f32 host copies (differentiable conversions), logged once; slow, for small models.
// Decoding: SparsekDecoder (decode.h), constant KV memory (k pool slots + w ring slots per head).
// Registered in registry.cpp. Tests: tests/attention/sparsek/test_sparsek_module.cpp.
#include <spdlog/spdlog.h>

#include <atomic>

#include "attention/attention.h"
#include "attention/qkv_projection.h"
#include "attention/sparsek/decode.h"
#include "attention/sparsek/scorer.h"
#include "attention/sparsek/sparsek_cuda.h"
#include "attention/sparsek/sparsek_reference.h"
#include "autograd/node.h"
#include "util/check.h"

namespace sk::attention {

namespace {

using sparsek::SparsekDecoder;
using sparsek::SparsekParams;
using sparsek::SparsekScorer;

class SparsekCache : public AttentionCache {
 public:
  SparsekCache(const Attention* owner, int64_t batch, SparsekDecoder decoder)
      : owner_(owner), batch_(batch), decoder_(std::move(decoder)) {}
  const Attention* owner() const { return owner_; }
  int64_t batch() const override { return batch_; }
  SparsekDecoder& decoder() { return decoder_; }
  void advance(int64_t n) { positions_ += n; }

 private:
  const Attention* owner_;
  int64_t batch_;
  SparsekDecoder decoder_;
};

Tensor host_core(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u, const SparsekParams& p) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn("attention: sparsek CUDA kernels take bf16 with head dim 64 or 128 only; computing this core with "
                 "the CPU reference on f32 host copies (slow, for small test models)");
  auto host = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::F32); };
  return sparsek::sparsek_attention_reference(host(q), host(k), host(v), host(u), p).to(q.dtype()).to(q.device());
}

class SparsekAttention : public Attention {
 public:
  SparsekAttention(const AttentionSpec& spec, Rng& rng)
      : proj_(spec, rng),
        scorer_(SparsekScorer::create(spec.n_embd, spec.attention.shared_selection ? 1 : spec.n_head,
                                      spec.attention.score_slope, sparsek::parse_score_init(spec.attention.score_init),
                                      spec.dtype, spec.device, rng)),
        params_{spec.attention.k, spec.attention.window, sparsek::parse_mask_mode(spec.attention.mask_mode)} {}

  std::string kind() const override { return "sparsek"; }

  Tensor forward(const Tensor& x) const override {
    QkvProjection::Heads h = proj_.heads(x, 0);  // (B, H, T, D)
    Tensor u = scorer_.forward(x, 0);            // (B, Hu, T)
    Tensor o;
    if (x.device().is_cpu())
      o = sparsek::sparsek_attention_reference(h.q, h.k, h.v, u, params_);
    else if (sparsek::sparsek_attention_cuda_supported(h.q))
      o = sparsek::sparsek_attention_cuda(h.q, h.k, h.v, u, params_);
    else
      o = host_core(h.q, h.k, h.v, u, params_);
    return proj_.output(o);
  }

  std::unique_ptr<AttentionCache> new_cache(int64_t batch, int64_t max_positions) const override {
    SK_CHECK(batch >= 1 && max_positions >= 1, "attention cache: batch ", batch, " and max_positions ", max_positions,
             " must be >= 1");
    const AttentionSpec& s = proj_.spec();
    // max_positions does not size anything: the memory is k + w rows per head however long.
    return std::make_unique<SparsekCache>(
        this, batch, SparsekDecoder(batch, s.n_head, scorer_.weight.size(0), s.head_dim(), params_));
  }

  Tensor forward_step(const Tensor& x, AttentionCache& cache_base) const override {
    auto* cache = dynamic_cast<SparsekCache*>(&cache_base);
    SK_CHECK(cache != nullptr && cache->owner() == this,
             "attention (sparsek): forward_step got a cache made by another attention module (use this module's "
             "new_cache)");
    SK_CHECK(x.ndim() == 3 && x.size(0) == cache->batch() && x.size(1) >= 1,
             "attention (sparsek): forward_step takes x (B, n, C) with B = the cache's batch ", cache->batch(),
             ", got ", shape_str(x.shape()));
    autograd::NoGradGuard no_grad;
    const int64_t L = cache->positions();
    QkvProjection::Heads h = proj_.heads(x, L);  // (B, H, n, D) at positions L .. L + n - 1
    Tensor u = scorer_.forward(x, L);            // (B, Hu, n)
    auto host = [](const Tensor& t) { return t.to(Device::cpu()); };
    Tensor o = cache->decoder().step(host(h.q), host(h.k), host(h.v), host(u)).to(x.device());
    cache->advance(x.size(1));
    return proj_.output(o);
  }

  std::vector<std::pair<std::string, Tensor>> named_parameters() const override {
    std::vector<std::pair<std::string, Tensor>> p = proj_.named_parameters();
    p.emplace_back("score_w", scorer_.weight);
    p.emplace_back("score_b", scorer_.bias);
    return p;
  }

  int64_t keys_attended(int64_t T) const override {
    return sparsek::sparsek_keys_attended(T, params_.k, params_.window);
  }

 private:
  QkvProjection proj_;
  SparsekScorer scorer_;
  SparsekParams params_;
};

}  // namespace

std::unique_ptr<Attention> make_sparsek_attention(const AttentionSpec& spec, Rng& rng) {
  SK_CHECK(spec.attention.k >= 1, "attention.k must be >= 1 for attention.kind \"sparsek\", got ", spec.attention.k);
  SK_CHECK(spec.attention.window >= 0, "attention.window must be >= 0 for attention.kind \"sparsek\", got ",
           spec.attention.window);
  SK_CHECK(spec.attention.score_slope >= 0, "attention.score_slope must be >= 0, got ", spec.attention.score_slope);
  return std::make_unique<SparsekAttention>(spec, rng);
}

}  // namespace sk::attention
