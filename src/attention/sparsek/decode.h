// Incremental SparseK attention for generation with constant KV memory
// (../shared/docs/attention-spec.md section 4.5), CPU, computing in double.
// Per batch element and score row (Hu rows, each serving Hs = H / Hu heads):
//   - a PrefixSelector: tau and the top-k over the candidate prefix; it keeps the scores of the
//     saturated and fractional keys only (scalars; dead keys are forgotten). With a position slope
//     c > 0 a key stays fractional for about 1/c positions, so this set stays bounded in practice;
//   - a k-slot pool of the selected keys' K/V rows (Hs, k, D): a key evicted from the top-k never
//     returns, so the key replacing it overwrites its slot;
//   - a w-slot ring of the window's K/V rows and scores: position t lives in slot t % w until it
//     leaves the window at t + w and enters the prefix (w = 0: a new key enters the prefix at once).
// KV memory is (k + w) rows per head whatever the generated length.
// step() takes the next n positions and returns what sparsek_attention_forward gives there over the
// whole sequence (same selection, masks and softmax; test: tests/attention/sparsek/test_decode.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "attention/sparsek/selection.h"
#include "attention/sparsek/sparsek_reference.h"
#include "tensor/tensor.h"

namespace sk::attention::sparsek {

class SparsekDecoder {
 public:
  // batch B, heads H, score rows Hu (H or 1), head dim D.
  SparsekDecoder(int64_t batch, int64_t heads, int64_t score_heads, int64_t head_dim, const SparsekParams& params);

  // q, k, v (B, H, n, D), u (B, Hu, n) at the next n positions -> out (B, H, n, D), inputs' dtype.
  Tensor step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u);

  int64_t positions() const { return positions_; }
  int64_t batch() const { return B_; }
  // K/V rows held per batch element and head: k + w, allocated up front, whatever the length.
  int64_t kv_rows_per_head() const { return params_.k + params_.window; }
  int64_t kv_bytes() const;  // K and V of every pool and ring, in bytes (double storage)
  // Largest number of scores a selector holds for tau (saturated + fractional keys), over the rows.
  int64_t max_tracked_scores() const;

 private:
  struct Row {
    PrefixSelector selector;
    std::vector<int64_t> slot_pos;       // (k): position in each pool slot, -1 when empty
    std::vector<double> slot_u;          // (k)
    std::vector<EntryState> slot_state;  // (k)
    std::vector<double> pool_k, pool_v;  // (Hs, k, D)
    std::vector<double> ring_u;          // (w)
    std::vector<double> ring_k, ring_v;  // (Hs, w, D)
    explicit Row(int64_t k) : selector(k) {}
  };
  // Adds key `pos` (score u, rows K/V (Hs, D) at kk/vv with stride `stride` between heads) to the prefix.
  void enter_prefix(Row& row, int64_t pos, double u, const double* kk, const double* vv, int64_t stride);

  int64_t B_, H_, Hu_, Hs_, D_;
  SparsekParams params_;
  int64_t positions_ = 0;
  std::vector<Row> rows_;  // (B * Hu)
};

}  // namespace sk::attention::sparsek
