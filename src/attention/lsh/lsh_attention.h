// The `lsh` attention kind (attention-spec.md section 3; docs/LSH.md): Reformer-style LSH attention
// as a module of the attention interface (attention.h). It owns
//   qk_w (C, C)  the shared query/key projection (no bias, as the reference): q = x W_qk^T
//   v_w  (C, C)  the value projection (no bias)
//   proj_w (C, C) + proj_b (C, when spec.bias)  the output projection
// drawn N(0, 0.02), N(0, 0.02), N(0, 0.02 / sqrt(2 n_layer)) in that order, then a 64-bit rotation
// seed from the same rng (so the rotations follow the run seed). Rotations (H, D, n_hashes,
// n_buckets/2) are drawn per call from (that seed, the layer, the step set by set_step, n_buckets);
// step -1 (the default, and what evaluation sets) gives fixed rotations per layer and n_buckets.
// Tests inject rotations with set_rotations. Rotary embeddings are refused (shared query/key).
// Core: lsh_attention_reference (lsh_reference.h) on the CPU; on CUDA the kernels (lsh_cuda.h) for
// bf16/f32 with head dim 64 or 128, else the reference on f32 host copies (with a warning; slow).
// The rotations are drawn on the CPU and copied to the device once per (step, n_buckets).
// Decoding: the cache keeps q and v of every position; each new token re-hashes and re-sorts the
// whole prefix and computes its own entries only (the output equals the last position of a forward
// over the prefix with the same rotations): O(L (n_hashes n_buckets D / 2 + log)) for hashing and
// sorting plus O(n_hashes chunk D) attention per token at prefix length L; memory 2 L H D per layer.
// On CUDA (where the kernels take the module's dtype and head dim) the cache lives on the device and
// each new token runs the CUDA forward over its prefix (all prefix rows: O(L n_hashes chunk D) per
// token, on the GPU), so strictly causal evaluation of a GPU model needs no host round trips.
// Registered in registry.cpp. Tests: tests/attention/lsh/test_lsh_module.cpp, tests/model/test_gpt_lsh.cpp.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "attention/attention.h"
#include "attention/lsh/lsh_reference.h"

namespace sk::attention {

class LshAttention : public Attention {
 public:
  LshAttention(const AttentionSpec& spec, Rng& rng);

  std::string kind() const override { return "lsh"; }
  Tensor forward(const Tensor& x) const override;
  std::unique_ptr<AttentionCache> new_cache(int64_t batch, int64_t max_positions) const override;
  Tensor forward_step(const Tensor& x, AttentionCache& cache) const override;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const override;
  int64_t keys_attended(int64_t T) const override;
  void set_step(int64_t step) const override { step_.store(step); }

  // Fixed rotations (H, D, n_hashes, NB/2) for every call from now on (tests); undefined: drawn again.
  void set_rotations(Tensor rotations) { injected_ = std::move(rotations); }
  // The rotations a forward over T positions uses now (CPU, the module's dtype or f32).
  Tensor rotations_for(int64_t T) const;
  const lsh::LshParams& params() const { return params_; }

  // The pieces of forward, for tests: q and v heads (B, H, T, D) of x (B, T, C), and the output
  // projection of o (B, H, T, D) -> (B, T, C).
  std::pair<Tensor, Tensor> heads(const Tensor& x) const;
  Tensor output(const Tensor& o) const;

 private:
  Tensor core(const Tensor& q, const Tensor& v) const;
  // rotations_for(T) in f32 on `device`; the last drawn set is kept there (per step, NB and device)
  // so that the micro-steps of one optimizer step and evaluation do not redraw and re-copy them.
  Tensor device_rotations(int64_t T, Device device) const;

  AttentionSpec spec_;
  lsh::LshParams params_;
  Tensor qk_w_, v_w_, proj_w_, proj_b_;
  uint64_t seed_ = 0;
  Tensor injected_;
  mutable std::atomic<int64_t> step_{-1};
  mutable std::mutex rot_mutex_;
  mutable Tensor rot_cached_;  // device copy of the rotations of (rot_step_, rot_nb_)
  mutable int64_t rot_step_ = 0, rot_nb_ = -1;
};

}  // namespace sk::attention
