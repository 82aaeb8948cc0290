// Chunked causal selection (CPU blueprint of a chunk-parallel GPU selection pass; see
// docs/perf-notes.md "SparseK kernels"): the queries are cut into chunks of L; every chunk starts
// from the CANONICAL state of its prefix (tau and the key states from sparsek_tau_search, the
// fractional sum in key order, the top-k by (u, pos)), which needs nothing from the previous chunk,
// and walks its queries with the incremental algorithm of selection.cpp. Chunks are independent,
// so a GPU can run them in parallel. Exactness is VERIFIED, not assumed: the walk's state at the
// end of chunk c (tau, fractional sum and count, saturated count, every key's state, bitwise) must
// equal the canonical start of chunk c + 1; where it does not (the walk's running fp64 sum rounded
// differently), the remaining chunks are walked sequentially from the true state. The result is
// therefore always identical to causal_selection (tested bitwise), and the statistics say how
// often the parallel start was usable (for f32 scores: always, in the tests' draws).
//   u: (T) scores; L >= 1 queries per chunk.
#pragma once
#include <cstdint>

#include "attention/sparsek/selection.h"
#include "kernels/attention/sparsek/chunk_schedule.h"

namespace sk::attention::sparsek {

struct ChunkedSelectionStats {
  int64_t chunks = 0;          // chunks whose start lies past the first k prefix keys (a real restart)
  int64_t verified = 0;        // of those, starts equal to the previous chunk's walked end state
  int64_t first_mismatch = -1; // first query of the first chunk that failed the check (-1: none)
};

CausalSelection causal_selection_chunked(const double* u, int64_t T, int64_t k, int64_t window, int64_t L,
                                         ChunkedSelectionStats* stats = nullptr);

// CPU model of the chunk-parallel GPU pass (kernels/attention/sparsek/selection_chunked.cu) for one
// row of f32 scores: the same canonical-start algorithm (exact top-k threshold, bisection over the
// breakpoints with the kernel's pivot rule, classification, fractional sum in key order, sorted
// heaps, the fractional heap's capacity rule; only f's sums run sequentially here instead of as
// block reductions), the SAME walk code
// (selection_chunked_common.h, compact uint64 heap keys), the same range conventions (sel_to
// starts at T), the same start / end verification and the same failure bits. A row that fails is
// recomputed by causal_selection, as the GPU recomputes it with its sequential kernel.
struct CanonicalStartModel {
  int fail = 0;                    // kFail* bits (0: usable)
  double tau = 0, sum_frac = 0;    // tau = -inf while n0 <= k
  int n_sat = 0, n_frac = 0;
  double lo = 0, hi = 0;           // the root segment (n0 > k)
  std::vector<uint8_t> state;      // (n0) int(EntryState)
  std::vector<uint64_t> top, sat, frac;  // sorted compact keys (valid min-heaps)
};
CanonicalStartModel canonical_start_gpu_model(const float* u, int64_t n0, int64_t k, int64_t fcap);

struct ChunkedGpuModelStats {
  int fail = 0;               // the row's failure bits (0: every chunk start verified)
  int64_t chunks = 0;         // chunk starts with more than k prefix keys
  int64_t verified = 0;       // of those, equal to the previous chunk's end state
  int64_t first_mismatch = -1;
};
// heap_arity: the walk's KeyHeapT (2 or 4; the kernel's SPARSEK_SELECTION_HEAP); no result depends on it.
CausalSelection causal_selection_chunked_gpu_model(const float* u, int64_t T, int64_t k, int64_t window, int64_t L,
                                                   int64_t fcap, ChunkedGpuModelStats* stats = nullptr,
                                                   int heap_arity = 2);
// The same over any chunk boundaries (uniform or balanced: kernels/attention/sparsek/chunk_schedule.h;
// T and window are the schedule's).
CausalSelection causal_selection_chunked_gpu_model(const float* u, int64_t k, const SkChunkSchedule& schedule,
                                                   int64_t fcap, ChunkedGpuModelStats* stats = nullptr,
                                                   int heap_arity = 2);

}  // namespace sk::attention::sparsek
