// LSH attention reference (src/attention/lsh/lsh_reference.h): fp64 gradcheck with fixed rotations,
// agreement with a dense brute-force formulation (allowed-key multisets built from the sorted order,
// one masked softmax per round, merged directly), and the edge cases of the spec: a position alone
// in its chunk, the self mask, the cyclic look-back into the other round, a key seen twice,
// T <= chunk and T not a multiple of chunk; and the incremental decode's algorithm as a CPU
// blueprint (equal to the prefix forward's last row).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "attention/lsh/lsh_reference.h"
#include "testing/gradcheck.h"
#include "testing/test_helpers.h"

using namespace sk;
using namespace sk::attention::lsh;

namespace {

// Dense brute force, f64, independent of LshLayout: for each round, the multiset of key positions
// each query entry may see (its chunk and the previous chunk of the sorted order), then
// lse = log sum_j count_j exp(a_ij) with the masked logits, out = merge of rounds.
std::vector<double> brute_force(const Tensor& q, const Tensor& v, const Tensor& rot, int64_t chunk) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  std::vector<double> Q = q.to_vector(), V = v.to_vector(), Rt = rot.to_vector(), out(size_t(B * H * T * D), 0.0);
  const bool hashed = T > chunk;
  const int64_t R = hashed ? rot.size(2) : 1, half = hashed ? rot.size(3) : 0;
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t h = bh % H;
    auto qd = [&](int64_t j, int64_t d) { return Q[size_t((bh * T + j) * D + d)]; };
    std::vector<double> K(size_t(T * D));
    for (int64_t j = 0; j < T; ++j) {
      double ms = 0;
      for (int64_t d = 0; d < D; ++d) ms += qd(j, d) * qd(j, d);
      for (int64_t d = 0; d < D; ++d) K[size_t(j * D + d)] = qd(j, d) / std::sqrt(ms / double(D) + 1e-6) / std::sqrt(double(D));
    }
    // sorted entries: (round * NB + bucket, round, position)
    std::vector<std::tuple<int64_t, int64_t, int64_t>> ent;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < T; ++j) {
        int64_t bucket = 0;
        if (hashed) {
          double best = -1e300;
          for (int64_t k = 0; k < 2 * half; ++k) {
            double y = 0;
            for (int64_t d = 0; d < D; ++d) y += qd(j, d) * Rt[size_t(((h * D + d) * R + r) * half + k % half)];
            if (k >= half) y = -y;
            if (y > best) best = y, bucket = k;
          }
        }
        ent.emplace_back(r * 2 * half + bucket, r, j);
      }
    std::sort(ent.begin(), ent.end());  // ties by (round, position): the stable order
    const int64_t E = int64_t(ent.size()), c = hashed ? chunk : T, n = (E + c - 1) / c;
    std::vector<double> lse(size_t(R * T)), o(size_t(R * T * D), 0.0);
    for (int64_t s = 0; s < E; ++s) {
      const auto [key, r, i] = ent[size_t(s)];
      std::vector<int64_t> count(size_t(T), 0);
      const int64_t ch = s / c;
      for (int64_t t = 0; t < E; ++t)
        if (t / c == ch || (hashed && n > 1 && t / c == (ch + n - 1) % n)) count[size_t(std::get<2>(ent[size_t(t)]))]++;
      std::vector<double> a(static_cast<size_t>(T));
      double m = -1e300;
      for (int64_t j = 0; j < T; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qd(i, d) * K[size_t(j * D + d)];
        a[size_t(j)] = j > i ? -1e9 : j == i ? -1e5 : dot;
        if (count[size_t(j)]) m = std::max(m, a[size_t(j)]);
      }
      double sum = 0;
      for (int64_t j = 0; j < T; ++j) sum += double(count[size_t(j)]) * std::exp(a[size_t(j)] - m);
      const double l = m + std::log(sum);
      lse[size_t(r * T + i)] = l;
      for (int64_t j = 0; j < T; ++j)
        for (int64_t d = 0; d < D; ++d)
          o[size_t((r * T + i) * D + d)] += double(count[size_t(j)]) * std::exp(a[size_t(j)] - l) * V[size_t((bh * T + j) * D + d)];
    }
    for (int64_t i = 0; i < T; ++i) {
      double m = -1e300, sum = 0;
      for (int64_t r = 0; r < R; ++r) m = std::max(m, lse[size_t(r * T + i)]);
      for (int64_t r = 0; r < R; ++r) sum += std::exp(lse[size_t(r * T + i)] - m);
      for (int64_t r = 0; r < R; ++r)
        for (int64_t d = 0; d < D; ++d)
          out[size_t((bh * T + i) * D + d)] += std::exp(lse[size_t(r * T + i)] - m) / sum * o[size_t((r * T + i) * D + d)];
    }
  }
  return out;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e = std::max(e, std::abs(a[i] - b[i]));
  return e;
}

struct Case {
  int64_t T, chunk, R, NB;
};

}  // namespace

TEST(LshReference, default_buckets_and_hash_argmax) {
  EXPECT_EQ(lsh_default_buckets(40, 8), 8);   // 2 * 5 = 10 -> 8
  EXPECT_EQ(lsh_default_buckets(16, 4), 8);
  EXPECT_EQ(lsh_default_buckets(100, 64), 2);
  EXPECT_EQ(lsh_default_buckets(4096, 64), 128);
  // q = (1, -3), rotations = identity (D 2, NB 4): [1, -3, -1, 3] -> bucket 3
  Tensor q = Tensor::from_vector({1, -3}, {1, 1, 1, 2}, DType::F64);
  Tensor rot = Tensor::from_vector({1, 0, 0, 1}, {1, 2, 1, 2}, DType::F64);
  EXPECT_EQ(lsh_hash(q, rot), std::vector<int64_t>{3});
  // zero rotations: every value 0, the first maximum is bucket 0
  EXPECT_EQ(lsh_hash(q, Tensor::zeros({1, 2, 1, 2}, DType::F64)), std::vector<int64_t>{0});
}

TEST(LshReference, matches_dense_brute_force) {
  const std::vector<Case> cases = {{12, 4, 1, 4}, {12, 4, 2, 4}, {16, 4, 3, 8}, {10, 4, 2, 4},
                                   {9, 4, 1, 2},  {13, 5, 2, 6}, {6, 8, 2, 4},  {8, 8, 1, 2}};
  for (const Case& c : cases)
    for (DType dt : {DType::F64, DType::F32}) {
      SCOPED_TRACE("T " + std::to_string(c.T) + " chunk " + std::to_string(c.chunk) + " R " + std::to_string(c.R) +
                   " NB " + std::to_string(c.NB) + " " + dtype_name(dt));
      Rng rng(100 + c.T);
      Tensor q = Tensor::randn({2, 2, c.T, 3}, rng, DType::F64), v = Tensor::randn({2, 2, c.T, 3}, rng, DType::F64);
      Tensor rot = Tensor::randn({2, 3, c.R, c.NB / 2}, rng, DType::F64);
      std::vector<double> want = brute_force(q, v, rot, c.chunk);
      std::vector<double> got = lsh_attention_forward(q.to(dt), v.to(dt), rot.to(dt), c.chunk).out.to_vector();
      // f32: a query whose only visible keys are copies of itself (or one whose lse sits near the
      // -1e5 self-mask value) carries that constant's f32 rounding (ulp 0.0078 at 1e5) into its
      // weights, as the fp32 reference does: up to ~3e-3 here.
      EXPECT_LT(max_diff(got, want), dt == DType::F64 ? 1e-12 : 1e-2);
    }
}

TEST(Gradcheck, lsh_attention_reference) {
  for (const Case& c : std::vector<Case>{{12, 4, 2, 4}, {10, 4, 2, 6}, {5, 8, 2, 4}, {9, 4, 1, 2}}) {
    SCOPED_TRACE("T " + std::to_string(c.T) + " chunk " + std::to_string(c.chunk) + " R " + std::to_string(c.R));
    Rng rng(200 + c.T);
    Tensor q = sk::testing::rand_leaf({1, 2, c.T, 3}, rng), v = sk::testing::rand_leaf({1, 2, c.T, 3}, rng);
    Tensor rot = Tensor::randn({2, 3, c.R, c.NB / 2}, rng, DType::F64);
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return lsh_attention_reference(in[0], in[1], rot, c.chunk); },
                     {q, v});
  }
}

// Zero rotations put every entry in bucket 0, so the sorted order is the entry order r * T + j.
// T 6, chunk 4, R 2: chunks [r0: 0 1 2 3] [r0: 4 5, r1: 0 1] [r1: 2 3 4 5].
TEST(LshReference, edge_cases_with_a_known_layout) {
  const int64_t T = 6, D = 3;
  Rng rng(300);
  Tensor q = Tensor::randn({1, 1, T, D}, rng, DType::F64), v = Tensor::randn({1, 1, T, D}, rng, DType::F64);
  Tensor rot = Tensor::zeros({1, D, 2, 1}, DType::F64);
  LshForward f = lsh_attention_forward(q, v, rot, 4);
  const LshLayout& lay = f.layouts[0];
  for (int64_t s = 0; s < 12; ++s) EXPECT_EQ(lay.order[size_t(s)], s);
  std::vector<int64_t> slots;
  lay.key_slots(0, slots);  // chunk 0 looks back at the last chunk, which is round 1's
  EXPECT_EQ(slots, (std::vector<int64_t>{8, 9, 10, 11, 0, 1, 2, 3}));
  lay.key_slots(4, slots);  // chunk 1 (both rounds) looks back at chunk 0
  EXPECT_EQ(slots, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  // Direct computation with explicit multisets of visible key positions per round.
  std::vector<double> Q = q.to_vector(), V = v.to_vector();
  auto key = [&](int64_t j, int64_t d) {
    double ms = 0;
    for (int64_t e = 0; e < D; ++e) ms += Q[size_t(j * D + e)] * Q[size_t(j * D + e)];
    return Q[size_t(j * D + d)] / std::sqrt(ms / D + 1e-6) / std::sqrt(double(D));
  };
  auto softmax_over = [&](int64_t i, const std::vector<int64_t>& keys, std::vector<double>& o) {
    std::vector<double> a;
    double m = -1e300;
    for (int64_t j : keys) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += Q[size_t(i * D + d)] * key(j, d);
      a.push_back(j > i ? -1e9 : j == i ? -1e5 : dot);
      m = std::max(m, a.back());
    }
    double sum = 0;
    for (double x : a) sum += std::exp(x - m);
    const double lse = m + std::log(sum);
    o.assign(size_t(D), 0.0);
    for (size_t t = 0; t < keys.size(); ++t)
      for (int64_t d = 0; d < D; ++d) o[size_t(d)] += std::exp(a[t] - lse) * V[size_t(keys[t] * D + d)];
    return lse;
  };
  std::vector<double> out = f.out.to_vector();
  auto merged = [&](int64_t i, const std::vector<int64_t>& k0, const std::vector<int64_t>& k1) {
    std::vector<double> o0, o1;
    const double l0 = softmax_over(i, k0, o0), l1 = softmax_over(i, k1, o1);
    const double m = std::max(l0, l1), w0 = std::exp(l0 - m) / (std::exp(l0 - m) + std::exp(l1 - m));
    double err = 0;
    for (int64_t d = 0; d < D; ++d)
      err = std::max(err, std::abs(out[size_t(i * D + d)] - (w0 * o0[size_t(d)] + (1 - w0) * o1[size_t(d)])));
    return err;
  };
  // Position 4, round 0 (chunk 1 = {4 5 0 1}, back {0 1 2 3}): keys 0 and 1 seen twice (both rounds'
  // copies); round 1 (chunk 2 = {2 3 4 5}, back {4 5 0 1}): itself twice (self mask both times).
  EXPECT_LT(merged(4, {0, 1, 2, 3, 4, 5, 0, 1}, {4, 5, 0, 1, 2, 3, 4, 5}), 1e-10);
  // Position 0, round 0 (chunk 0, back = chunk 2 of round 1, all later positions but itself).
  EXPECT_LT(merged(0, {2, 3, 4, 5, 0, 1, 2, 3}, {0, 1, 2, 3, 4, 5, 0, 1}), 1e-10);
  // Self mask: position 0 sees only itself (and future keys at -1e9): its output is v_0 (to the
  // rounding of logits near -1e5: ulp 1.5e-11 in f64).
  for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(out[size_t(d)], V[size_t(d)], 1e-10);
  // A key seen twice has twice the weight: the brute force agrees on every position.
  EXPECT_LT(max_diff(out, brute_force(q, v, rot, 4)), 1e-10);
}

TEST(LshReference, position_alone_in_its_chunk_and_short_sequences) {
  // T 9, chunk 4, R 1: chunks of 4, 4, 1; the lone last slot sees chunk 1 and itself.
  Rng rng(400);
  Tensor q = Tensor::randn({1, 1, 9, 2}, rng, DType::F64), v = Tensor::randn({1, 1, 9, 2}, rng, DType::F64);
  Tensor rot = Tensor::randn({1, 2, 1, 1}, rng, DType::F64);
  LshForward f = lsh_attention_forward(q, v, rot, 4);
  std::vector<int64_t> slots;
  f.layouts[0].key_slots(8, slots);
  EXPECT_EQ(slots, (std::vector<int64_t>{4, 5, 6, 7, 8}));
  EXPECT_LT(max_diff(f.out.to_vector(), brute_force(q, v, rot, 4)), 1e-13);
  // T <= chunk: plain causal attention with the self mask: position 1 sees only position 0.
  Tensor q2 = Tensor::randn({1, 1, 3, 2}, rng, DType::F64), v2 = Tensor::randn({1, 1, 3, 2}, rng, DType::F64);
  std::vector<double> o = lsh_attention_forward(q2, v2, Tensor(), 8).out.to_vector(), V = v2.to_vector();
  for (int64_t d = 0; d < 2; ++d) {
    EXPECT_NEAR(o[size_t(d)], V[size_t(d)], 1e-15);
    EXPECT_NEAR(o[size_t(2 + d)], V[size_t(d)], 1e-15);
  }
  EXPECT_EQ(lsh_keys_attended(3, 2, 8), 9);
  EXPECT_EQ(lsh_keys_attended(9, 1, 4), 4 * (4 + 1) + 4 * 8 + 1 * 5);
}

// The incremental decode's algorithm (kernels/attention/lsh/lsh_decode.cu, docs/LSH.md "Decode and
// its cost"), written out on the CPU as its blueprint: per (head, round) the buckets and the
// stable (bucket, position) order of the prefix are kept; a new position is hashed alone (while the
// bucket count NB does not change; else the prefix is hashed and sorted again), inserted at rank
// #{j < t : bucket(j) <= bucket(t)}, and attends to the keys of the slots of its chunk and the
// previous chunk (cyclic) of the R * L round-major sorted entries, rounds merged by log-sum-exp.
// It must equal the reference forward's last row over every prefix (f64, 1e-12), across the NB
// changes of the default bucket count (L = 9, 16, 32, 64 for chunk 8).
TEST(LshReference, incremental_decode_blueprint_equals_the_prefix_forward) {
  const int64_t H = 2, D = 8, R = 2, T = 90, chunk = 8;
  Rng rng(41);
  Tensor q = Tensor::randn({1, H, T, D}, rng, DType::F64), v = Tensor::randn({1, H, T, D}, rng, DType::F64);
  const std::vector<double> qv = q.to_vector(), vv = v.to_vector();
  auto Q = [&](int64_t h, int64_t j, int64_t d) { return qv[size_t((h * T + j) * D + d)]; };
  auto V = [&](int64_t h, int64_t j, int64_t d) { return vv[size_t((h * T + j) * D + d)]; };
  auto kscale = [&](int64_t h, int64_t j) {
    double ms = 0;
    for (int64_t d = 0; d < D; ++d) ms += Q(h, j, d) * Q(h, j, d);
    return 1.0 / std::sqrt(ms / double(D) + kKeyNormEps) / std::sqrt(double(D));
  };
  std::vector<std::vector<int64_t>> buckets(size_t(H * R)), order(size_t(H * R));
  std::vector<int64_t> rank(size_t(H * R));
  int64_t nb = 0, rebuilds = 0;
  for (int64_t L = chunk + 1; L <= T; ++L) {
    const int64_t t = L - 1, NB = lsh_default_buckets(L, chunk);
    const Tensor rot = lsh_random_rotations(H, D, R, NB, 100 + uint64_t(NB), DType::F64);
    if (NB != nb) {  // hash and sort the whole prefix
      const std::vector<int64_t> b = lsh_hash(q.slice(2, 0, L).contiguous(), rot);  // (1, H, R, L)
      for (int64_t hr = 0; hr < H * R; ++hr) {
        auto& bk = buckets[size_t(hr)];
        bk.assign(b.begin() + hr * L, b.begin() + (hr + 1) * L);
        auto& ord = order[size_t(hr)];
        ord.resize(size_t(L));
        for (int64_t j = 0; j < L; ++j) ord[size_t(j)] = j;
        std::stable_sort(ord.begin(), ord.end(), [&](int64_t a, int64_t c) { return bk[size_t(a)] < bk[size_t(c)]; });
        rank[size_t(hr)] = std::find(ord.begin(), ord.end(), t) - ord.begin();
      }
      nb = NB;
      ++rebuilds;
    } else {  // hash the new position alone and insert it
      const std::vector<int64_t> b = lsh_hash(q.slice(2, t, L).contiguous(), rot);  // (1, H, R, 1)
      for (int64_t hr = 0; hr < H * R; ++hr) {
        auto& bk = buckets[size_t(hr)];
        int64_t rk = 0;
        for (int64_t j = 0; j < t; ++j) rk += bk[size_t(j)] <= b[size_t(hr)];
        bk.push_back(b[size_t(hr)]);
        order[size_t(hr)].insert(order[size_t(hr)].begin() + rk, t);
        rank[size_t(hr)] = rk;
      }
    }
    const Tensor want = lsh_attention_forward(q.slice(2, 0, L).contiguous(), v.slice(2, 0, L).contiguous(), rot, chunk, t)
                            .out.slice(2, t, L)
                            .contiguous();  // (1, H, 1, D)
    const std::vector<double> wv = want.to_vector();
    const int64_t E = R * L, n = (E + chunk - 1) / chunk;
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> lse(static_cast<size_t>(R)), o(static_cast<size_t>(R * D), 0.0);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t s = r * L + rank[size_t(h * R + r)], c = s / chunk;
        std::vector<int64_t> slots;
        auto add = [&](int64_t ch) {
          for (int64_t g = ch * chunk; g < std::min(E, (ch + 1) * chunk); ++g) slots.push_back(g);
        };
        if (n > 1) add((c + n - 1) % n);
        add(c);
        std::vector<double> a;
        std::vector<int64_t> pos;
        double m = -INFINITY;
        for (int64_t g : slots) {
          const int64_t j = order[size_t(h * R + g / L)][size_t(g % L)];
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += Q(h, t, d) * Q(h, j, d);
          a.push_back(j == t ? kSelfMaskValue : dot * kscale(h, j));
          pos.push_back(j);
          m = std::max(m, a.back());
        }
        double sum = 0;
        for (double x : a) sum += std::exp(x - m);
        lse[size_t(r)] = m + std::log(sum);
        for (size_t k = 0; k < a.size(); ++k)
          for (int64_t d = 0; d < D; ++d) o[size_t(r * D + d)] += std::exp(a[k] - lse[size_t(r)]) * V(h, pos[k], d);
      }
      const double m = *std::max_element(lse.begin(), lse.end());
      double sum = 0;
      for (double x : lse) sum += std::exp(x - m);
      for (int64_t d = 0; d < D; ++d) {
        double out = 0;
        for (int64_t r = 0; r < R; ++r) out += std::exp(lse[size_t(r)] - m) / sum * o[size_t(r * D + d)];
        ASSERT_NEAR(out, wv[size_t(h * D + d)], 1e-12) << "L " << L << " head " << h << " dim " << d;
      }
    }
  }
  EXPECT_EQ(rebuilds, 4);  // NB 2, 4, 8, 16 (L = 9, 16, 32, 64)
}
