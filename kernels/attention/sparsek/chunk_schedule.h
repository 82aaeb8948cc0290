// Where the chunk-parallel SparseK selection pass (selection_chunked.cu) cuts a row of T queries
// into chunks, shared by the kernels, their host planner and the CPU model
// (src/attention/sparsek/selection_chunked.cpp). Plain C++ for host and device.
//
// Chunk c covers queries [b_c, b_{c+1}), b_0 = 0, the last chunk ends at T. Its block first builds
// the canonical state of the prefix [0, n0_c), n0_c = max(0, b_c - window) (passes over n0_c keys),
// then walks its b_{c+1} - b_c queries one after another. All chunks run in one wave, so the
// slowest block sets the kernel's time:
//   - uniform (balance 0): every chunk `len` queries; the last chunk pays the longest start;
//   - balanced (balance q > 0): q prefix keys of a start are taken to cost as much as one walked
//     query, and chunk c gets max(len, ceil((budget - n0_c) / q)) queries, so every chunk costs
//     about `budget` key units (n0_c + q L_c): long chunks early, short ones late. The planner
//     picks the smallest budget whose chunks fit the wave (greedy: each chunk as long as the
//     budget allows, so no schedule with as many chunks has a cheaper slowest chunk).
// Any schedule gives the same results bit for bit (every start is verified against the walk).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SK_CHUNK_HD __host__ __device__ __forceinline__
#else
#define SK_CHUNK_HD inline
#endif

struct SkChunkSchedule {
  int seq_len, window;
  int len;         // uniform: the chunk length; balanced: the shortest chunk
  int balance;     // 0 = uniform, else q: prefix keys per walked query of cost
  int64_t budget;  // balanced: a chunk's cost n0_c + q L_c, in prefix keys
  int chunks;      // number of chunks (sk_chunk_count)
  int64_t frac_keys;  // sk_chunk_frac_offset(chunks): a row's spill storage for fractional heaps, in keys
};

// b_{c+1} from b_c.
SK_CHUNK_HD int sk_chunk_next(const SkChunkSchedule& s, int start) {
  int64_t len = s.len;
  if (s.balance > 0) {
    const int64_t n0 = start > s.window ? int64_t(start) - s.window : 0;
    const int64_t room = s.budget - n0;
    const int64_t want = room > 0 ? (room + s.balance - 1) / s.balance : 0;
    if (want > len) len = want;
  }
  const int64_t end = int64_t(start) + len;
  return end < s.seq_len ? int(end) : s.seq_len;
}

SK_CHUNK_HD int sk_chunk_count(const SkChunkSchedule& s) {
  int n = 0;
  for (int b = 0; b < s.seq_len; b = sk_chunk_next(s, b)) ++n;
  return n;
}

// b_c (c <= chunks; b_chunks = T).
SK_CHUNK_HD int sk_chunk_start(const SkChunkSchedule& s, int c) {
  int b = 0;
  for (int i = 0; i < c && b < s.seq_len; ++i) b = sk_chunk_next(s, b);
  return b;
}

// b_1 + ... + b_c: where chunk c's spill storage for its fractional heap starts in its row
// (selection_chunked.cu; chunk c's heap never holds keys past b_{c+1}).
SK_CHUNK_HD int64_t sk_chunk_frac_offset(const SkChunkSchedule& s, int c) {
  int64_t offset = 0;
  for (int i = 0, b = 0; i < c && b < s.seq_len; ++i) {
    b = sk_chunk_next(s, b);
    offset += b;
  }
  return offset;
}

// Uniform chunks of len (>= 1) queries.
inline SkChunkSchedule sk_chunk_schedule_uniform(int seq_len, int window, int len) {
  SkChunkSchedule s{seq_len, window, len < 1 ? 1 : len, 0, 0, 0, 0};
  s.chunks = sk_chunk_count(s);
  s.frac_keys = sk_chunk_frac_offset(s, s.chunks);
  return s;
}

// Balanced chunks (balance q >= 1, shortest chunk min_len >= 1), at most max_chunks of them (>= 1):
// the smallest budget that covers the row in max_chunks chunks.
inline SkChunkSchedule sk_chunk_schedule_balanced(int seq_len, int window, int min_len, int balance, int max_chunks) {
  SkChunkSchedule s{seq_len, window, min_len < 1 ? 1 : min_len, balance < 1 ? 1 : balance, 0, 0, 0};
  if (max_chunks < 1) max_chunks = 1;
  // budget hi: one chunk takes the whole row (n0 = 0, T queries).
  int64_t lo = 0, hi = int64_t(s.balance) * seq_len;
  while (lo < hi) {
    s.budget = lo + (hi - lo) / 2;
    if (sk_chunk_count(s) <= max_chunks) hi = s.budget;
    else lo = s.budget + 1;
  }
  s.budget = lo;
  s.chunks = sk_chunk_count(s);
  s.frac_keys = sk_chunk_frac_offset(s, s.chunks);
  return s;
}
