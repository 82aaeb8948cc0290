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

namespace sk::attention::sparsek {

struct ChunkedSelectionStats {
  int64_t chunks = 0;          // chunks whose start lies past the first k prefix keys (a real restart)
  int64_t verified = 0;        // of those, starts equal to the previous chunk's walked end state
  int64_t first_mismatch = -1; // first query of the first chunk that failed the check (-1: none)
};

CausalSelection causal_selection_chunked(const double* u, int64_t T, int64_t k, int64_t window, int64_t L,
                                         ChunkedSelectionStats* stats = nullptr);

}  // namespace sk::attention::sparsek
