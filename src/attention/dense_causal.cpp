// DenseCausalAttention (dense_causal.h).
#include "attention/dense_causal.h"

#include <algorithm>

#include "attention/causal_attention.h"
#include "attention/decode.h"
#include "attention/kv_cache.h"
#include "autograd/node.h"
#include "util/check.h"

namespace sk::attention {

namespace {

class DenseKvCache : public AttentionCache {
 public:
  DenseKvCache(const Attention* owner, int64_t batch, int64_t max_positions, KvRing ring)
      : owner_(owner), batch_(batch), max_positions_(max_positions), ring_(std::move(ring)) {}
  const Attention* owner() const { return owner_; }
  int64_t batch() const override { return batch_; }
  int64_t max_positions() const { return max_positions_; }
  KvRing& ring() { return ring_; }
  void advance(int64_t n) { positions_ += n; }

 private:
  const Attention* owner_;  // the module whose new_cache made this (its ring size fits that module)
  int64_t batch_, max_positions_;
  KvRing ring_;
};

}  // namespace

DenseCausalAttention::DenseCausalAttention(std::string kind, const AttentionSpec& spec, CausalWindow mask, Rng& rng)
    : kind_(std::move(kind)), proj_(spec, rng), mask_(mask) {
  SK_CHECK(mask.window >= 0, "attention.window must be >= 0, got ", mask.window);
}

Tensor DenseCausalAttention::forward(const Tensor& x) const {
  // Without rotary the core takes the projection as it comes out (B, T, 3, H, D): on CUDA its
  // gradient is then one buffer, not three that the tape concatenates.
  if (proj_.spec().rotary_dims() == 0) return proj_.output(causal_attention_packed(proj_.packed(x), mask_));
  QkvProjection::Heads h = proj_.heads(x, 0);
  return proj_.output(causal_attention(h.q, h.k, h.v, mask_));  // core: (B, H, T, D)
}

std::unique_ptr<AttentionCache> DenseCausalAttention::new_cache(int64_t batch, int64_t max_positions) const {
  SK_CHECK(batch >= 1 && max_positions >= 1, "attention cache: batch ", batch, " and max_positions ", max_positions,
           " must be >= 1");
  const AttentionSpec& s = proj_.spec();
  const int64_t slots = mask_.window > 0 ? std::min(mask_.window, max_positions) : max_positions;
  return std::make_unique<DenseKvCache>(this, batch, max_positions,
                                        KvRing(batch, s.n_head, slots, s.head_dim(), s.dtype, s.device));
}

Tensor DenseCausalAttention::forward_step(const Tensor& x, AttentionCache& cache_base) const {
  auto* cache = dynamic_cast<DenseKvCache*>(&cache_base);
  SK_CHECK(cache != nullptr && cache->owner() == this, "attention (", kind_,
           "): forward_step got a cache made by another attention module (use this module's new_cache)");
  SK_CHECK(x.ndim() == 3 && x.size(0) == cache->batch() && x.size(1) >= 1, "attention (", kind_,
           "): forward_step takes x (B, n, C) with B = the cache's batch ", cache->batch(), ", got ",
           shape_str(x.shape()));
  autograd::NoGradGuard no_grad;
  const int64_t L = cache->positions(), n = x.size(1);
  KvRing& ring = cache->ring();
  // A ring shorter than the window (or any ring of full attention) must not wrap.
  const bool ring_covers_window = mask_.window > 0 && ring.slots() >= mask_.window;
  SK_CHECK(ring_covers_window || L + n <= cache->max_positions(), "attention (", kind_, "): the KV cache holds ",
           cache->max_positions(), " positions, ", L, " used, ", n, " more asked (make it with a larger max_positions)");
  QkvProjection::Heads h = proj_.heads(x, L);  // (B, H, n, D) at positions L .. L + n - 1
  Tensor o;
  if (L == 0 && n > 1) {  // the prompt: the whole-sequence core, then keep its keys
    o = causal_attention(h.q, h.k, h.v, mask_);
    ring.write(h.k, h.v, 0);
  } else {
    const int64_t B = h.q.size(0), H = h.q.size(1), D = h.q.size(3);
    o = Tensor::empty({B, H, n, D}, h.q.dtype(), h.q.device());
    for (int64_t i = 0; i < n; ++i) {
      ring.write(h.k.slice(2, i, i + 1), h.v.slice(2, i, i + 1), L + i);
      Tensor oi = attention_decode(h.q.slice(2, i, i + 1).reshape({B, H, D}), ring.k(), ring.v(), L + i, mask_.window);
      o.slice(2, i, i + 1).copy_(oi.view({B, H, 1, D}));
    }
  }
  cache->advance(n);
  return proj_.output(o);
}

int64_t DenseCausalAttention::keys_attended(int64_t T) const {
  const int64_t w = mask_.window;
  if (w == 0 || w >= T) return T * (T + 1) / 2;
  return w * (w + 1) / 2 + (T - w) * w;  // the first w queries see 1..w keys, the rest w each
}

}  // namespace sk::attention
