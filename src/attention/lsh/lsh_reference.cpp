// CPU reference of LSH attention (lsh_reference.h). Plain loops over (b, h) rows and sorted slots,
// accumulation in the tensor's type (f64 for gradchecks).
#include "attention/lsh/lsh_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "util/check.h"

namespace sk::attention::lsh {

namespace {

void check_inputs(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk) {
  ops::check_floating("lsh_attention", "q", q);
  ops::check_same_shape("lsh_attention", "q", q, "v", v);
  ops::check_same_dtype("lsh_attention", "q", q, "v", v);
  SK_CHECK(q.ndim() == 4, "lsh_attention: q, v must be (B, H, T, D), got ", shape_str(q.shape()));
  SK_CHECK(q.device().is_cpu(), "lsh_attention reference runs on the CPU, got ", q.device().str());
  SK_CHECK(chunk >= 1, "lsh_attention: chunk must be >= 1, got ", chunk);
  if (q.size(2) <= chunk) return;  // no hashing
  SK_CHECK(rotations.defined() && rotations.ndim() == 4 && rotations.size(0) == q.size(1) &&
               rotations.size(1) == q.size(3) && rotations.size(2) >= 1 && rotations.size(3) >= 1,
           "lsh_attention: rotations must be (H, D, n_hashes, n_buckets/2) = (", q.size(1), ", ", q.size(3),
           ", R, NB/2), got ", rotations.defined() ? shape_str(rotations.shape()) : std::string("none"));
}

// k_j = q_j / sqrt(mean(q_j^2) + eps) / sqrt(D) for the T rows of one (b, h).
template <typename F>
void normalise_keys(const F* Q, int64_t T, int64_t D, F* K) {
  const F c = F(1) / std::sqrt(F(D));
  for (int64_t j = 0; j < T; ++j) {
    F ms = 0;
    for (int64_t d = 0; d < D; ++d) ms += Q[j * D + d] * Q[j * D + d];
    const F s = F(1) / std::sqrt(ms / F(D) + F(kKeyNormEps));
    for (int64_t d = 0; d < D; ++d) K[j * D + d] = Q[j * D + d] * s * c;
  }
}

// The logit of query position i with key position j (the masks replace it by a constant).
template <typename F>
F logit(const F* Q, const F* K, int64_t i, int64_t j, int64_t D) {
  if (j > i) return F(kCausalMaskValue);
  if (j == i) return F(kSelfMaskValue);
  F dot = 0;
  for (int64_t d = 0; d < D; ++d) dot += Q[i * D + d] * K[j * D + d];
  return dot;
}

}  // namespace

int64_t lsh_default_buckets(int64_t T, int64_t chunk) {
  SK_CHECK(chunk >= 1, "lsh: chunk must be >= 1, got ", chunk);
  int64_t n = 2 * (T / chunk), p = 2;
  while (p * 2 <= n) p *= 2;
  return p;
}

int64_t lsh_buckets(const LshParams& params, int64_t T) {
  return params.n_buckets > 0 ? params.n_buckets : lsh_default_buckets(T, params.chunk);
}

Tensor lsh_random_rotations(int64_t H, int64_t D, int64_t n_hashes, int64_t n_buckets, uint64_t seed, DType dtype) {
  SK_CHECK(n_buckets >= 2 && n_buckets % 2 == 0, "lsh: n_buckets must be even and >= 2, got ", n_buckets);
  Rng rng(seed);
  return Tensor::randn({H, D, n_hashes, n_buckets / 2}, rng, dtype);
}

std::vector<int64_t> lsh_hash(const Tensor& q_in, const Tensor& rot_in) {
  SK_CHECK(q_in.ndim() == 4 && rot_in.ndim() == 4 && rot_in.size(0) == q_in.size(1) && rot_in.size(1) == q_in.size(3),
           "lsh_hash: q (B, H, T, D) and rotations (H, D, R, NB/2) do not fit: ", shape_str(q_in.shape()), " and ",
           shape_str(rot_in.shape()));
  Tensor q = q_in.contiguous();
  Tensor rot = rot_in.to(q.dtype()).contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), R = rot.size(2), half = rot.size(3);
  std::vector<int64_t> buckets(size_t(B * H * R * T));
  ops::dispatch_cpu_float(q.dtype(), "lsh_hash", [&]<typename F>() {
    std::vector<F> y(half);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < T; ++j) {
            const F* Qj = q.data<F>() + ((b * H + h) * T + j) * D;
            for (int64_t k = 0; k < half; ++k) {
              F acc = 0;
              for (int64_t d = 0; d < D; ++d) acc += Qj[d] * rot.data<F>()[((h * D + d) * R + r) * half + k];
              y[k] = acc;
            }
            // argmax over [y, -y], the first maximum (torch.argmax)
            int64_t best = 0;
            F bv = y[0];
            for (int64_t k = 1; k < 2 * half; ++k) {
              const F val = k < half ? y[k] : -y[k - half];
              if (val > bv) bv = val, best = k;
            }
            buckets[size_t(((b * H + h) * R + r) * T + j)] = best;
          }
  });
  return buckets;
}

void LshLayout::key_slots(int64_t s, std::vector<int64_t>& out) const {
  out.clear();
  const int64_t E = entries(), c = s / chunk, n = chunks();
  auto add = [&](int64_t ch) {
    for (int64_t t = ch * chunk; t < std::min(E, (ch + 1) * chunk); ++t) out.push_back(t);
  };
  if (look_back && n > 1) add((c + n - 1) % n);
  add(c);
}

LshLayout lsh_layout(const int64_t* buckets, int64_t n_hashes, int64_t n_buckets, int64_t T, int64_t chunk) {
  LshLayout L;
  L.T = T;
  if (T <= chunk) {  // plain causal attention over one chunk of all positions
    L.rounds = 1;
    L.chunk = T;
    L.order.resize(size_t(T));
    std::iota(L.order.begin(), L.order.end(), 0);
    return L;
  }
  L.rounds = n_hashes;
  L.chunk = chunk;
  L.look_back = true;
  L.order.resize(size_t(n_hashes * T));
  std::iota(L.order.begin(), L.order.end(), 0);
  // Sort key r * NB + bucket; the stable sort keeps ties in entry-id order (round-major, then position).
  std::stable_sort(L.order.begin(), L.order.end(), [&](int64_t a, int64_t b) {
    return (a / T) * n_buckets + buckets[a] < (b / T) * n_buckets + buckets[b];
  });
  return L;
}

LshForward lsh_attention_forward(const Tensor& q_in, const Tensor& v_in, const Tensor& rotations, int64_t chunk,
                                 int64_t only_position) {
  check_inputs(q_in, v_in, rotations, chunk);
  const bool hashed = q_in.size(2) > chunk;
  return lsh_attention_forward_buckets(q_in, v_in, hashed ? lsh_hash(q_in.contiguous(), rotations) : std::vector<int64_t>{},
                                       hashed ? rotations.size(2) : 1, hashed ? 2 * rotations.size(3) : 0, chunk,
                                       only_position);
}

LshForward lsh_attention_forward_buckets(const Tensor& q_in, const Tensor& v_in, const std::vector<int64_t>& buckets,
                                         int64_t n_hashes, int64_t n_buckets, int64_t chunk, int64_t only_position) {
  // Rotations are not needed here: a chunk >= T makes check_inputs skip their check.
  check_inputs(q_in, v_in, Tensor(), std::max<int64_t>(chunk, q_in.ndim() == 4 ? q_in.size(2) : 1));
  SK_CHECK(chunk >= 1, "lsh_attention: chunk must be >= 1, got ", chunk);
  Tensor q = q_in.contiguous(), v = v_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const bool hashed = T > chunk;
  const int64_t R = hashed ? n_hashes : 1;
  const int64_t NB = hashed ? n_buckets : 0;
  if (hashed) {
    SK_CHECK(n_hashes >= 1 && n_buckets >= 2 && int64_t(buckets.size()) == B * H * R * T, "lsh_attention: ",
             buckets.size(), " buckets given for (B, H, R, T) = (", B, ", ", H, ", ", R, ", ", T, ")");
    for (int64_t b : buckets) SK_CHECK(b >= 0 && b < NB, "lsh_attention: bucket ", b, " outside [0, ", NB, ")");
  }
  LshForward f;
  f.out = Tensor::zeros({B, H, T, D}, q.dtype());
  f.out_rounds = Tensor::zeros({B, H, R, T, D}, q.dtype());
  f.lse_rounds = Tensor::zeros({B, H, R, T}, q.dtype());
  for (int64_t bh = 0; bh < B * H; ++bh)
    f.layouts.push_back(lsh_layout(hashed ? buckets.data() + bh * R * T : nullptr, R, NB, T, chunk));
  ops::dispatch_cpu_float(q.dtype(), "lsh_attention", [&]<typename F>() {
    std::vector<F> K(size_t(T * D)), a;
    std::vector<int64_t> slots;
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const F* Q = q.data<F>() + bh * T * D;
      const F* V = v.data<F>() + bh * T * D;
      F* O = f.out_rounds.data<F>() + bh * R * T * D;
      F* L = f.lse_rounds.data<F>() + bh * R * T;
      const LshLayout& lay = f.layouts[size_t(bh)];
      normalise_keys(Q, T, D, K.data());
      for (int64_t s = 0; s < lay.entries(); ++s) {
        const int64_t e = lay.order[size_t(s)], i = e % T;  // entry e = (round e / T, position i)
        if (only_position >= 0 && i != only_position) continue;
        lay.key_slots(s, slots);
        a.resize(slots.size());
        F m = -std::numeric_limits<F>::infinity();
        for (size_t t = 0; t < slots.size(); ++t) {
          a[t] = logit(Q, K.data(), i, lay.order[size_t(slots[t])] % T, D);
          m = std::max(m, a[t]);
        }
        F sum = 0;
        for (F x : a) sum += std::exp(x - m);
        const F lse = m + std::log(sum);
        L[e] = lse;
        for (size_t t = 0; t < slots.size(); ++t) {
          const F p = std::exp(a[t] - lse);
          const int64_t j = lay.order[size_t(slots[t])] % T;
          for (int64_t d = 0; d < D; ++d) O[e * D + d] += p * V[j * D + d];
        }
      }
      // Merge the rounds: out_i = sum_r softmax_r(lse_i^r) o_i^r.
      F* Out = f.out.data<F>() + bh * T * D;
      for (int64_t i = 0; i < T; ++i) {
        if (only_position >= 0 && i != only_position) continue;
        F m = -std::numeric_limits<F>::infinity();
        for (int64_t r = 0; r < R; ++r) m = std::max(m, L[r * T + i]);
        F sum = 0;
        for (int64_t r = 0; r < R; ++r) sum += std::exp(L[r * T + i] - m);
        for (int64_t r = 0; r < R; ++r) {
          const F w = std::exp(L[r * T + i] - m) / sum;
          for (int64_t d = 0; d < D; ++d) Out[i * D + d] += w * O[(r * T + i) * D + d];
        }
      }
    }
  });
  return f;
}

LshGrads lsh_attention_backward(const Tensor& dout_in, const Tensor& q_in, const Tensor& v_in, const LshForward& fwd) {
  Tensor q = q_in.contiguous(), v = v_in.contiguous(), dout = dout_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), R = fwd.lse_rounds.size(2);
  LshGrads g{Tensor::zeros(q.shape(), q.dtype()), Tensor::zeros(q.shape(), q.dtype())};
  ops::dispatch_cpu_float(q.dtype(), "lsh_attention_backward", [&]<typename F>() {
    std::vector<F> K(size_t(T * D)), dK(size_t(T * D)), dO(size_t(R * T * D)), dL(size_t(R * T));
    std::vector<int64_t> slots;
    const F c = F(1) / std::sqrt(F(D));
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const F *Q = q.data<F>() + bh * T * D, *V = v.data<F>() + bh * T * D, *G = dout.data<F>() + bh * T * D;
      const F* Out = fwd.out.data<F>() + bh * T * D;
      const F* O = fwd.out_rounds.data<F>() + bh * R * T * D;
      const F* L = fwd.lse_rounds.data<F>() + bh * R * T;
      F *dQ = g.dq.data<F>() + bh * T * D, *dV = g.dv.data<F>() + bh * T * D;
      const LshLayout& lay = fwd.layouts[size_t(bh)];
      normalise_keys(Q, T, D, K.data());
      std::fill(dK.begin(), dK.end(), F(0));
      // Through the merge: dO_ir = w_ir g_i, dlse_ir = w_ir (g_i.o_ir - g_i.out_i).
      for (int64_t i = 0; i < T; ++i) {
        F m = -std::numeric_limits<F>::infinity();
        for (int64_t r = 0; r < R; ++r) m = std::max(m, L[r * T + i]);
        F sum = 0;
        for (int64_t r = 0; r < R; ++r) sum += std::exp(L[r * T + i] - m);
        F g_out = 0;
        for (int64_t d = 0; d < D; ++d) g_out += G[i * D + d] * Out[i * D + d];
        for (int64_t r = 0; r < R; ++r) {
          const F w = std::exp(L[r * T + i] - m) / sum;
          F g_o = 0;
          for (int64_t d = 0; d < D; ++d) {
            dO[(r * T + i) * D + d] = w * G[i * D + d];
            g_o += G[i * D + d] * O[(r * T + i) * D + d];
          }
          dL[r * T + i] = w * (g_o - g_out);
        }
      }
      // Through each entry's softmax.
      for (int64_t s = 0; s < lay.entries(); ++s) {
        const int64_t e = lay.order[size_t(s)], i = e % T;
        const F* dOe = dO.data() + e * D;
        F De = 0;
        for (int64_t d = 0; d < D; ++d) De += dOe[d] * O[e * D + d];
        lay.key_slots(s, slots);
        for (int64_t slot : slots) {
          const int64_t j = lay.order[size_t(slot)] % T;
          const F p = std::exp(logit(Q, K.data(), i, j, D) - L[e]);
          F dp = 0;
          for (int64_t d = 0; d < D; ++d) {
            dV[j * D + d] += p * dOe[d];
            dp += dOe[d] * V[j * D + d];
          }
          if (j >= i) continue;  // masked: a constant logit
          const F da = p * (dp - De + dL[e]);
          for (int64_t d = 0; d < D; ++d) {
            dQ[i * D + d] += da * K[j * D + d];
            dK[j * D + d] += da * Q[i * D + d];
          }
        }
      }
      // Through the key normalisation k = q s c.
      for (int64_t j = 0; j < T; ++j) {
        F ms = 0, qdk = 0;
        for (int64_t d = 0; d < D; ++d) {
          ms += Q[j * D + d] * Q[j * D + d];
          qdk += Q[j * D + d] * dK[j * D + d];
        }
        const F s = F(1) / std::sqrt(ms / F(D) + F(kKeyNormEps));
        for (int64_t d = 0; d < D; ++d)
          dQ[j * D + d] += c * (s * dK[j * D + d] - s * s * s / F(D) * Q[j * D + d] * qdk);
      }
    }
  });
  return g;
}

Tensor lsh_attention_reference(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk) {
  LshForward f = lsh_attention_forward(q.detach(), v.detach(), rotations, chunk);
  if (autograd::needs_grad({&q, &v})) {
    Tensor qd = q.detach(), vd = v.detach();
    // A detached handle of the output in the closure (holding the output itself would be a cycle).
    auto saved = std::make_shared<LshForward>(LshForward{f.out.detach(), f.out_rounds, f.lse_rounds, f.layouts});
    autograd::record("attention_lsh", {q, v}, {f.out},
                     [qd, vd, saved](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       LshGrads d = lsh_attention_backward(g[0], qd, vd, *saved);
                       return std::vector<Tensor>{d.dq, d.dv};
                     });
  }
  return f.out;
}

int64_t lsh_keys_attended(int64_t T, int64_t n_hashes, int64_t chunk) {
  if (T <= chunk) return T * T;
  const int64_t E = n_hashes * T, n = (E + chunk - 1) / chunk, last = E - (n - 1) * chunk;
  auto size = [&](int64_t c) { return c == n - 1 ? last : chunk; };
  int64_t keys = 0;
  for (int64_t c = 0; c < n; ++c) keys += size(c) * (size(c) + size((c + n - 1) % n));
  return keys;
}

}  // namespace sk::attention::lsh
