// CPU reference of Reformer-style LSH attention (../shared/docs/attention-spec.md section 3; the
// function of Hugging Face's LSHSelfAttention in decoder mode with one chunk of look-back, no
// look-ahead and no dropout), forward and backward, f32 and f64, written for clarity.
//
// Legend: B batch, H heads, T time, D head dim, R hash rounds (n_hashes), NB buckets (even).
//   q, v:       (B, H, T, D)  shared query/key projection and values (q = x W_qk, v = x W_v)
//   rotations:  (H, D, R, NB/2), Hugging Face's layout; constants (no gradient)
//   out:        (B, H, T, D)
// The function, per (b, h):
//   keys        k_j = q_j / sqrt(mean_d(q_j^2) + 1e-6) / sqrt(D); logits a_ij = q_i . k_j (no 1/sqrt(D))
//   hashing     bucket_r(j) = argmax over [q_j R_r, -q_j R_r] (first maximum), on q, not differentiated
//   sort        the R*T entries (r, j), entry id r*T + j, stably sorted by r*NB + bucket_r(j)
//   chunks      the sorted sequence cut into chunks of `chunk` entries (the last may be short); an
//               entry attends to the keys of its chunk and of the previous chunk, cyclically (chunk 0
//               looks back at the last chunk, which belongs to the last round)
//   masks       key position > query position: logit := -1e9; key position == query position (in any
//               round): logit := -1e5; masked logits stay in the softmax with these constant values
//   rounds      each entry's softmax output o and log-sum-exp lse go back to (r, i) and
//               out_i = sum_r exp(lse_i^r - logsumexp_r lse_i^r) o_i^r
//   T <= chunk  one plain causal softmax over 0..T-1 with the same logits and masks (no hashing;
//               rotations are not read)
// Backward (rotations, buckets and the sort are constants), with g_i = dout_i and w_ir the merge
// weights: dO_ir = w_ir g_i, dlse_ir = w_ir (g_i.o_ir - g_i.out_i); per entry e with query i and
// softmax P over its keys: dv_j += P_ej dO_e; for unmasked keys da_ej = P_ej (dO_e.v_j - dO_e.o_e +
// dlse_e), dq_i += da_ej k_j, dk_j += da_ej q_i; masked logits are constants. Finally the key
// normalisation k = q s c (s = (mean q^2 + eps)^-1/2, c = D^-1/2): dq += c (s dk - s^3/D q (q.dk)).
// Tests: tests/attention/lsh/test_lsh_reference.cpp (fp64 gradcheck, a dense brute-force formulation,
// chunk edge cases), tests/attention/lsh/test_lsh_hf_parity.cpp (Hugging Face fixtures).
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace sk::attention::lsh {

// The reference implementation's fp32 constants (kept in f64 too).
constexpr double kCausalMaskValue = -1e9;
constexpr double kSelfMaskValue = -1e5;
constexpr double kKeyNormEps = 1e-6;

struct LshParams {
  int64_t n_hashes = 2;   // R, >= 1 (config attention.n_hashes)
  int64_t n_buckets = 0;  // NB, even >= 2; 0: lsh_default_buckets(T, chunk) (config attention.n_buckets)
  int64_t chunk = 128;    // entries per chunk, >= 1 (config attention.chunk)
};

// 2 * floor(T / chunk) rounded down to a power of two, at least 2 (Hugging Face's
// _set_num_buckets without its factorisation, which the spec does not use).
int64_t lsh_default_buckets(int64_t T, int64_t chunk);
// params.n_buckets, or the default for T when it is 0.
int64_t lsh_buckets(const LshParams& params, int64_t T);

// Standard normal rotations (H, D, R, NB/2) drawn from Rng(seed), in dtype, CPU.
Tensor lsh_random_rotations(int64_t H, int64_t D, int64_t n_hashes, int64_t n_buckets, uint64_t seed, DType dtype);

// Buckets of q (B, H, T, D) under rotations (H, D, R, NB/2): (B, H, R, T) in [0, NB), without the
// round offsets, computed in q's dtype.
std::vector<int64_t> lsh_hash(const Tensor& q, const Tensor& rotations);

// Which entries one (b, h) row of attention sees: the sorted entry ids and the chunk structure.
struct LshLayout {
  int64_t T = 0;
  int64_t rounds = 1;            // R, or 1 when T <= chunk
  int64_t chunk = 0;             // entries per chunk (T when T <= chunk)
  bool look_back = false;        // one chunk of cyclic look-back (false when T <= chunk)
  std::vector<int64_t> order;    // (rounds * T) entry ids r * T + j in sorted order
  int64_t entries() const { return int64_t(order.size()); }
  int64_t chunks() const { return (entries() + chunk - 1) / chunk; }
  // Sorted slots whose keys slot s sees: the previous chunk's (cyclic, when look_back), then its own.
  void key_slots(int64_t s, std::vector<int64_t>& out) const;
};
// The layout of one (b, h): buckets (R * T, round-major) of that row; ignored when T <= chunk.
LshLayout lsh_layout(const int64_t* buckets, int64_t n_hashes, int64_t n_buckets, int64_t T, int64_t chunk);

struct LshForward {
  Tensor out;                        // (B, H, T, D)
  Tensor out_rounds;                 // (B, H, rounds, T, D) each entry's softmax output
  Tensor lse_rounds;                 // (B, H, rounds, T) each entry's log-sum-exp
  std::vector<LshLayout> layouts;    // (B * H)
};
// Without autograd. only_position >= 0 computes the entries of that query position only (the rest
// of out, out_rounds and lse_rounds is left 0): the decode step's last position.
LshForward lsh_attention_forward(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk,
                                 int64_t only_position = -1);
// The same with given buckets (B, H, R, T) in [0, NB) instead of hashing (ignored when T <= chunk):
// the CUDA tests run the reference on the GPU's buckets, so a near-tie argmax flip between the
// GPU's fp32 hash and an f64 one cannot change the layout being compared.
LshForward lsh_attention_forward_buckets(const Tensor& q, const Tensor& v, const std::vector<int64_t>& buckets,
                                         int64_t n_hashes, int64_t n_buckets, int64_t chunk,
                                         int64_t only_position = -1);
struct LshGrads {
  Tensor dq, dv;  // (B, H, T, D)
};
LshGrads lsh_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& v, const LshForward& fwd);

// Differentiable (q, v) -> out with constant rotations. Inputs f32 or f64 CPU tensors.
Tensor lsh_attention_reference(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk);

// Cost model: keys (masked ones included, as the chunked computation does) attended by the T queries
// of one sequence: T^2 when T <= chunk, else about R * T * 2 * chunk (each entry sees its chunk and
// the previous one; the short last chunk counted exactly).
int64_t lsh_keys_attended(int64_t T, int64_t n_hashes, int64_t chunk);

}  // namespace sk::attention::lsh
