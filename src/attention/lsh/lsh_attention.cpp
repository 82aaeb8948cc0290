// LshAttention (lsh_attention.h): the `lsh` kind's module, its rotations and its decode cache.
#include "attention/lsh/lsh_attention.h"

#include "attention/lsh/lsh_cuda.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "autograd/node.h"
#include "ops/ops.h"
#include "util/check.h"
#include "util/env.h"

namespace sk::attention {

namespace {

// q and v of every position so far: (B, H, max_positions, D). On the module's CUDA device in its
// dtype when the kernels take them (each decode step then runs the CUDA forward on the prefix), else
// host copies in the core's dtype (the CPU reference).
class LshCache : public AttentionCache {
 public:
  LshCache(const Attention* owner, Tensor q, Tensor v) : owner_(owner), q_(std::move(q)), v_(std::move(v)) {}
  const Attention* owner() const { return owner_; }
  int64_t batch() const override { return q_.size(0); }
  int64_t max_positions() const { return q_.size(2); }
  Tensor& q() { return q_; }
  Tensor& v() { return v_; }
  bool on_device() const { return lsh::lsh_attention_cuda_supported(q_); }
  // The incremental decode's caches, valid for the rotations of one step (set_step): a different
  // step starts them afresh.
  lsh::LshDecodeState& decode_state(int64_t step) {
    if (step != decode_step_) decode_ = lsh::LshDecodeState{}, decode_step_ = step;
    return decode_;
  }
  void advance(int64_t n) { positions_ += n; }

 private:
  const Attention* owner_;
  Tensor q_, v_;
  lsh::LshDecodeState decode_;  // the incremental decode's caches (on_device only)
  int64_t decode_step_ = -1;
};

// SPARSEK_LSH_DECODE: "incremental" (default) hashes and inserts only the new position
// (lsh_cuda_decode_step; docs/LSH.md); "prefix" runs the CUDA forward over each prefix.
bool incremental_decode() { return util::env_choice("SPARSEK_LSH_DECODE", {"incremental", "prefix"}) == 0; }

// The core's dtype: the module's on the CPU in f32/f64, else f32 host copies.
DType core_dtype(const Tensor& t) {
  return t.device().is_cpu() && (t.dtype() == DType::F32 || t.dtype() == DType::F64) ? t.dtype() : DType::F32;
}

}  // namespace

LshAttention::LshAttention(const AttentionSpec& s, Rng& rng)
    : spec_(s), params_{s.attention.n_hashes, s.attention.n_buckets, s.attention.chunk} {
  const int64_t C = s.n_embd;
  auto normal = [&](const Shape& shape, double sd) {
    return Tensor::randn(shape, rng, s.dtype, s.device, 0.0, sd).set_requires_grad();
  };
  qk_w_ = normal({C, C}, 0.02);
  v_w_ = normal({C, C}, 0.02);
  proj_w_ = normal({C, C}, 0.02 / std::sqrt(2.0 * double(s.n_layer)));
  if (s.bias) proj_b_ = Tensor::zeros({C}, s.dtype, s.device).set_requires_grad();
  seed_ = rng.next_u64();
}

Tensor LshAttention::rotations_for(int64_t T) const {
  if (injected_.defined()) return injected_;
  const int64_t nb = lsh::lsh_buckets(params_, T);
  const int64_t step = step_.load();
  // Distinct streams per (layer, step, n_buckets); step -1 is the evaluation stream.
  const uint64_t seed = seed_ + 0x9e3779b97f4a7c15ull * uint64_t(spec_.layer + 1) +
                        0xbf58476d1ce4e5b9ull * uint64_t(step + 2) + 0x94d049bb133111ebull * uint64_t(nb);
  return lsh::lsh_random_rotations(spec_.n_head, spec_.head_dim(), params_.n_hashes, nb, seed,
                                   spec_.dtype == DType::F64 ? DType::F64 : DType::F32);
}

Tensor LshAttention::device_rotations(int64_t T, Device device) const {
  if (injected_.defined()) return injected_.to(DType::F32).to(device);
  const int64_t nb = lsh::lsh_buckets(params_, T), step = step_.load();
  std::lock_guard<std::mutex> lock(rot_mutex_);
  if (!rot_cached_.defined() || rot_step_ != step || rot_nb_ != nb || rot_cached_.device() != device) {
    rot_cached_ = rotations_for(T).to(DType::F32).to(device);
    rot_step_ = step;
    rot_nb_ = nb;
  }
  return rot_cached_;
}

std::pair<Tensor, Tensor> LshAttention::heads(const Tensor& x) const {
  SK_CHECK(x.ndim() == 3 && x.size(2) == spec_.n_embd, "attention (lsh): x must be (B, T, ", spec_.n_embd, "), got ",
           shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), H = spec_.n_head, D = spec_.head_dim();
  auto split = [&](const Tensor& w) { return ops::linear(x, w, Tensor()).view({B, T, H, D}).transpose(1, 2); };
  return {split(qk_w_), split(v_w_)};
}

Tensor LshAttention::output(const Tensor& o) const {
  const int64_t B = o.size(0), T = o.size(2);
  return ops::linear(o.transpose(1, 2).reshape({B, T, spec_.n_embd}), proj_w_, proj_b_);
}

Tensor LshAttention::core(const Tensor& q, const Tensor& v) const {
  const DType dt = core_dtype(q);
  if (dt == q.dtype() && q.device().is_cpu())
    return lsh::lsh_attention_reference(q, v, rotations_for(q.size(2)), params_.chunk);
  if (lsh::lsh_attention_cuda_supported(q) && v.dtype() == q.dtype())
    return lsh::lsh_attention_cuda(q, v, device_rotations(q.size(2), q.device()), params_.chunk);
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn("attention: lsh has CUDA kernels for bf16/f32 with head dim 64 or 128 only; computing its core "
                 "with the CPU reference on f32 host copies (slow, for small test models)");
  auto host = [&](const Tensor& t) { return t.to(Device::cpu()).to(dt); };
  return lsh::lsh_attention_reference(host(q), host(v), rotations_for(q.size(2)).to(dt), params_.chunk)
      .to(q.dtype())
      .to(q.device());
}

Tensor LshAttention::forward(const Tensor& x) const {
  auto [q, v] = heads(x);  // (B, H, T, D)
  return output(core(q, v));
}

std::unique_ptr<AttentionCache> LshAttention::new_cache(int64_t batch, int64_t max_positions) const {
  SK_CHECK(batch >= 1 && max_positions >= 1, "attention cache: batch ", batch, " and max_positions ", max_positions,
           " must be >= 1");
  const Shape shape{batch, spec_.n_head, max_positions, spec_.head_dim()};
  if (!spec_.device.is_cpu()) {
    Tensor q = Tensor::zeros(shape, spec_.dtype, spec_.device);
    if (lsh::lsh_attention_cuda_supported(q)) return std::make_unique<LshCache>(this, q, Tensor::zeros(shape, spec_.dtype, spec_.device));
  }
  const DType dt = spec_.device.is_cpu() && spec_.dtype == DType::F64 ? DType::F64 : DType::F32;
  return std::make_unique<LshCache>(this, Tensor::zeros(shape, dt), Tensor::zeros(shape, dt));
}

Tensor LshAttention::forward_step(const Tensor& x, AttentionCache& cache_base) const {
  auto* cache = dynamic_cast<LshCache*>(&cache_base);
  SK_CHECK(cache != nullptr && cache->owner() == this,
           "attention (lsh): forward_step got a cache made by another attention module (use this module's new_cache)");
  SK_CHECK(x.ndim() == 3 && x.size(0) == cache->batch() && x.size(1) >= 1,
           "attention (lsh): forward_step takes x (B, n, C) with B = the cache's batch ", cache->batch(), ", got ",
           shape_str(x.shape()));
  autograd::NoGradGuard no_grad;
  const int64_t L = cache->positions(), n = x.size(1);
  SK_CHECK(L + n <= cache->max_positions(), "attention (lsh): the cache holds ", cache->max_positions(),
           " positions, ", L, " used, ", n, " more asked (make it with a larger max_positions)");
  auto [q, v] = heads(x);  // (B, H, n, D)
  if (cache->on_device()) {
    // Strictly causal on the GPU: position t's output is the last row of the CUDA forward over the
    // prefix 0..t (its own bucket count and rotations, as the CPU path below), read in place from
    // the cache's strided slices.
    cache->q().slice(2, L, L + n).copy_(q);
    cache->v().slice(2, L, L + n).copy_(v);
    const int64_t B = q.size(0), H = q.size(1), D = q.size(3);
    Tensor o = Tensor::empty({B, H, n, D}, q.dtype(), q.device());
    const bool incremental =
        incremental_decode() && lsh::lsh_cuda_decode_supported(cache->q(), params_.n_hashes, params_.chunk);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = L + i;
      if (incremental && t + 1 > params_.chunk) {
        o.slice(2, i, i + 1).copy_(lsh::lsh_cuda_decode_step(cache->decode_state(step_.load()), cache->q(), cache->v(), t + 1,
                                                             device_rotations(t + 1, q.device()), params_.chunk));
        continue;
      }
      Tensor qp = cache->q().slice(2, 0, t + 1), vp = cache->v().slice(2, 0, t + 1);
      const lsh::LshCudaForward f = lsh::lsh_cuda_forward(qp, vp, device_rotations(t + 1, q.device()), params_.chunk);
      o.slice(2, i, i + 1).copy_(f.out.slice(2, t, t + 1));
    }
    cache->advance(n);
    return output(o);
  }
  const DType dt = cache->q().dtype();
  cache->q().slice(2, L, L + n).copy_(q.to(Device::cpu()).to(dt));
  cache->v().slice(2, L, L + n).copy_(v.to(Device::cpu()).to(dt));
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3);
  Tensor o = Tensor::empty({B, H, n, D}, dt);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = L + i;  // this token's position: the last of the prefix 0..t
    Tensor qp = cache->q().slice(2, 0, t + 1), vp = cache->v().slice(2, 0, t + 1);
    lsh::LshForward f = lsh::lsh_attention_forward(qp, vp, rotations_for(t + 1).to(dt), params_.chunk, t);
    o.slice(2, i, i + 1).copy_(f.out.slice(2, t, t + 1));
  }
  cache->advance(n);
  return output(o.to(x.dtype()).to(x.device()));
}

std::vector<std::pair<std::string, Tensor>> LshAttention::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> p{{"qk_w", qk_w_}, {"v_w", v_w_}, {"proj_w", proj_w_}};
  if (proj_b_.defined()) p.emplace_back("proj_b", proj_b_);
  return p;
}

int64_t LshAttention::keys_attended(int64_t T) const {
  return lsh::lsh_keys_attended(T, params_.n_hashes, params_.chunk);
}

std::unique_ptr<Attention> make_lsh_attention(const AttentionSpec& spec, Rng& rng) {
  const config::AttentionConfig& a = spec.attention;
  SK_CHECK(a.n_hashes >= 1, "attention.n_hashes must be >= 1 for attention.kind \"lsh\", got ", a.n_hashes);
  SK_CHECK(a.chunk >= 1, "attention.chunk must be >= 1 for attention.kind \"lsh\", got ", a.chunk);
  SK_CHECK(a.n_buckets == 0 || (a.n_buckets >= 2 && a.n_buckets % 2 == 0), "attention.n_buckets must be 0 (default: ",
           "2T/chunk rounded down to a power of two) or an even number >= 2 for attention.kind \"lsh\", got ",
           a.n_buckets);
  SK_CHECK(spec.rotary_dims() == 0, "attention.kind \"lsh\" does not support rotary embeddings (model.rotary_pct = ",
           spec.rotary_pct, "): its queries are its keys; use learned positions");
  return std::make_unique<LshAttention>(spec, rng);
}

}  // namespace sk::attention
