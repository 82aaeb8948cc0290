// Shared by the chunk-parallel GPU selection pass (selection_chunked.cu) and its CPU model
// (src/attention/sparsek/selection_chunked.cpp, causal_selection_chunked_gpu_model): plain C++ that
// nvcc compiles for the device and any C++ compiler for the host, so the CPU tests run the very
// code the kernel runs for the walk and for every scalar decision of the canonical start.
//
// Compact heap keys: a score u (f32) and its position pos as ONE uint64,
//   key = ord(u) << 32 | pos,  ord monotone on floats with -0 mapped to +0,
// so (u, pos) lexicographic order (the CPU's fractional and top-k order) is the integer order. The
// saturated heap is ordered by (fl(u - 1), pos) on the CPU; that is the same order when u -> fl(u - 1)
// is strictly monotone on the row's scores, which holds when every score is finite and is 0 or has
// |u| >= 2^-28 (then u - 1 is exact in fp64). Rows with other scores go to the sequential kernel
// (sk_score_compact_ok).
// All fp64 arithmetic uses explicit round-to-nearest operations (no FMA contraction), like
// selection.cu and the CPU's selection.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SKC_HD __host__ __device__ __forceinline__
#else
#define SKC_HD inline
#endif

namespace sk_selchunk {

SKC_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  volatile double r = a + b;
  return r;
#endif
}
SKC_HD double dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  volatile double r = a - b;
  return r;
#endif
}
SKC_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  volatile double r = a * b;
  return r;
#endif
}
SKC_HD double ddiv(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  volatile double r = a / b;
  return r;
#endif
}

SKC_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
#endif
}
SKC_HD float bits_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, 4);
  return x;
#endif
}

// True when the compact keys order this score exactly (see the header comment).
SKC_HD bool score_compact_ok(float u) {
  const uint32_t a = float_bits(u) & 0x7fffffffu;
  if (a >= 0x7f800000u) return false;  // inf / nan
  return a == 0 || a >= 0x31800000u;    // 0 or |u| >= 2^-28
}

SKC_HD uint32_t ord(float u) {
  uint32_t b = float_bits(u);
  if ((b & 0x7fffffffu) == 0) b = 0;  // -0 -> +0
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
SKC_HD float unord(uint32_t o) { return bits_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o); }
SKC_HD uint64_t make_key(float u, int pos) { return (uint64_t(ord(u)) << 32) | uint32_t(pos); }
SKC_HD double key_u(uint64_t key) { return double(unord(uint32_t(key >> 32))); }
SKC_HD int key_pos(uint64_t key) { return int(uint32_t(key)); }
SKC_HD double breakpoint(double u) { return dsub(u, 1.0); }

// Min-heap of uint64 keys (all distinct: positions are unique) in caller storage, kArity = 4
// (the default) or 2 (binary) children per node; a sorted array is a valid one of either. Only
// the heap's minimum is ever read, so the arity changes no result. The 4-ary heap has half the
// levels: a pop's sift-down issues each level's four independent loads together, where the walk
// (one thread waiting on shared-memory loads) pays a load latency per level. Measured (H100,
// 2026-12-05, ncu at 16k): chunk kernel 2.34 ms binary, 2.09 ms 4-ary (SPARSEK_SELECTION_HEAP=2|4).
template <int kArity>
struct KeyHeapT {
  static_assert(kArity == 2 || kArity == 4, "binary or 4-ary");
  uint64_t* a;
  int n, cap;
  SKC_HD static int parent(int i) { return kArity == 2 ? (i - 1) >> 1 : (i - 1) >> 2; }
  SKC_HD bool push(uint64_t k) {
    if (n >= cap) return false;
    int i = n++;
    while (i > 0) {
      const int par = parent(i);
      const uint64_t kp = a[par];
      if (kp < k) break;
      a[i] = kp;
      i = par;
    }
    a[i] = k;
    return true;
  }
  // The smallest child of node i (c = its first child, c < n) and its index.
  SKC_HD uint64_t min_child(int c, int* at) const {
    if constexpr (kArity == 2) {
      uint64_t kc = a[c];
      *at = c;
      if (c + 1 < n) {
        const uint64_t k2 = a[c + 1];
        if (k2 < kc) *at = c + 1, kc = k2;
      }
      return kc;
    } else {
      // Missing children read as the largest key: never chosen before a real one. (A node with
      // four children, every level but the last, skips the bounds tests: ~10 fewer instructions
      // per level on the walk's critical path.)
      uint64_t k0, k1, k2, k3;
      if (c + 3 < n) {
        k0 = a[c], k1 = a[c + 1], k2 = a[c + 2], k3 = a[c + 3];
      } else {
        k0 = a[c];
        k1 = c + 1 < n ? a[c + 1] : UINT64_MAX;
        k2 = c + 2 < n ? a[c + 2] : UINT64_MAX;
        k3 = UINT64_MAX;
      }
      const bool l01 = k1 < k0, l23 = k3 < k2;
      const uint64_t m01 = l01 ? k1 : k0, m23 = l23 ? k3 : k2;
      const bool right = m23 < m01;
      *at = right ? (l23 ? c + 3 : c + 2) : (l01 ? c + 1 : c);
      return right ? m23 : m01;
    }
  }
  SKC_HD void sift_down(int i, uint64_t k) {
    for (;;) {
      const int c = kArity * i + 1;
      if (c >= n) break;
      int at;
      const uint64_t kc = min_child(c, &at);
      if (!(kc < k)) break;
      a[i] = kc;
      i = at;
    }
    a[i] = k;
  }
  SKC_HD void pop() {
    --n;
    if (n > 0) sift_down(0, a[n]);
  }
  SKC_HD void replace_top(uint64_t k) { sift_down(0, k); }
};
using KeyHeap = KeyHeapT<2>;

// The tau walk's scalars (selection.cpp TauWalker / selection.cu select_kernel).
struct TauState {
  double tau, sum_frac, frac_max;
  int n_prefix;
};

// Failure bits of a row (the row is then recomputed by the sequential kernel).
enum : int {
  kFailVerify = 1,     // a chunk's canonical start differs from the previous chunk's walked end
  kFailCapacity = 2,   // a heap would overflow (cannot happen: saturated <= k + 1, fractional
                       // heap sized by its bound; kept as a guard)
  kFailScores = 4,     // a score the compact keys cannot order exactly (non-finite, tiny)
  kFailInternal = 8,   // empty fractional set at a root, bisection did not converge
  kFailUnsupported = 16  // the chunked pass was not run for this call (k too large for its heaps)
};

// One query of the tau walk: key j (score u) enters at query i. Sink: frac_from(key, i),
// dead_from(key, i). Returns false on heap overflow (the state is then unusable).
// Mirrors select_kernel (selection.cu) step for step.
template <class Heap, class Sink>
SKC_HD bool tau_walk_step(TauState& s, Heap& sat, Heap& frac, float uf, int j, int i, int K, Sink& sink) {
  const double u = double(uf);
  const uint64_t key = make_key(uf, j);
  ++s.n_prefix;
  const double bp = breakpoint(u);
  if (bp >= s.tau) {
    if (!sat.push(key)) return false;
  } else if (u > s.tau) {
    if (!frac.push(key)) return false;
    s.sum_frac = dadd(s.sum_frac, u);
    s.frac_max = s.frac_max < u ? u : s.frac_max;
    sink.frac_from(j, i);
  } else {
    sink.frac_from(j, i);
    sink.dead_from(j, i);
  }
  if (s.n_prefix <= K) return true;
  double nb = INFINITY;
  for (;;) {
    if (frac.n == 0) s.sum_frac = 0.0, s.frac_max = -INFINITY;
    nb = INFINITY;
    double sat_bp = INFINITY;
    if (sat.n > 0) nb = sat_bp = breakpoint(key_u(sat.a[0]));
    if (frac.n > 0) {
      const double fu = key_u(frac.a[0]);
      nb = fu < nb ? fu : nb;
    }
    if (nb == INFINITY) break;
    const bool flat_after = (sat.n == 0 || sat_bp > nb) && (frac.n == 0 || s.frac_max <= nb);
    const double f_nb = flat_after ? double(sat.n) : dadd(double(sat.n), dsub(s.sum_frac, dmul(double(frac.n), nb)));
    if (f_nb < double(K)) break;
    s.tau = nb;
    while (sat.n > 0 && breakpoint(key_u(sat.a[0])) <= nb) {  // saturated -> fractional
      const uint64_t e = sat.a[0];
      sat.pop();
      const double ue = key_u(e);
      if (!frac.push(e)) return false;
      s.sum_frac = dadd(s.sum_frac, ue);
      s.frac_max = s.frac_max < ue ? ue : s.frac_max;
      sink.frac_from(key_pos(e), i);
    }
    while (frac.n > 0 && key_u(frac.a[0]) <= nb) {  // fractional -> dead
      const uint64_t d = frac.a[0];
      s.sum_frac = dsub(s.sum_frac, key_u(d));
      frac.pop();
      sink.dead_from(key_pos(d), i);
    }
    if (frac.n == 0) s.frac_max = -INFINITY;
  }
  if (frac.n > 0) {
    const double t = ddiv(dsub(dadd(double(sat.n), s.sum_frac), double(K)), double(frac.n));
    s.tau = t < s.tau ? s.tau : (nb < t ? nb : t);  // std::clamp(t, tau, nb)
  }
  return true;
}

// One query of the top-k walk (the new key j enters at query i; equal scores: the newer key wins,
// i.e. the larger compact key). Sink: sel_to(key, query). The ranges start with sel_to = T (see
// selection_chunked.cu): a key not selected when it enters gets sel_to = enter = i, an evicted
// key gets the query that evicts it; each happens in exactly one chunk.
template <class Heap, class Sink>
SKC_HD void topk_walk_step(Heap& top, float uf, int j, int i, int K, Sink& sink) {
  const uint64_t key = make_key(uf, j);
  if (top.n < K) {
    top.push(key);
  } else if (key > top.a[0]) {
    sink.sel_to(key_pos(top.a[0]), i);
    top.replace_top(key);
  } else {
    sink.sel_to(j, i);
  }
}

// The canonical tau of a prefix from its root segment [lo, hi): the operator's closed form
// (projection.cpp sparsek_tau_search: (sum + U - k) / |S| clamped into [lo, hi]).
SKC_HD double canonical_tau(double sum_frac, int n_sat, int n_frac, int K, double lo, double hi) {
  const double t = ddiv(dsub(dadd(sum_frac, double(n_sat)), double(K)), double(n_frac));
  return t < lo ? lo : (hi < t ? hi : t);
}

// Bisection over the breakpoints of a prefix: the pivot inside (lo, hi) from the two reductions
// over the breakpoints b strictly inside: ge = min{b >= mid}, lt = max{b < mid} (INFINITY /
// -INFINITY when none). Returns false when no breakpoint lies inside (the segment is found).
SKC_HD double bisect_mid(double lo, double hi) { return dadd(lo, dmul(0.5, dsub(hi, lo))); }
SKC_HD bool bisect_pivot(double ge, double lt, double& m) {
  if (ge != INFINITY) return m = ge, true;
  if (lt != -INFINITY) return m = lt, true;
  return false;
}
// Folds one entry's breakpoints (u and fl(u - 1)) into the pivot reductions for (lo, hi, mid).
SKC_HD void bisect_fold(double u, double lo, double hi, double mid, double& ge, double& lt) {
  const double b[2] = {u, breakpoint(u)};
  for (int x = 0; x < 2; ++x) {
    if (b[x] > lo && b[x] < hi) {
      if (b[x] >= mid) ge = b[x] < ge ? b[x] : ge;
      else lt = b[x] > lt ? b[x] : lt;
    }
  }
}

}  // namespace sk_selchunk
