// ZeRO-1 partition of the flattened parameter / optimizer-state space across ranks.
//
// The parameters, in optimizer slot order, are laid end to end into one flat index space of
// `total` elements (parameter i occupies [offsets[i], offsets[i] + numels[i])). That space is
// padded up to W * shard_size, shard_size a multiple of `align` elements (so every rank's shard
// starts aligned, for vectorized kernels and NCCL reduce-scatter, which needs equal counts), and
// rank r owns [r * shard_size, (r + 1) * shard_size) clipped to `total`: contiguous, aligned and
// balanced (every rank owns shard_size elements except the last ones, which own what is left).
// segments(r) lists the pieces of parameters that fall into rank r's shard (a parameter may be
// split between two or more ranks; the AdamW of a shard runs per segment, each with its
// parameter's weight decay).
//
// Re-sharding: an optimizer state saved by a world of N ranks (one flat array per rank, its owned
// range) is re-cut for M ranks (M = 1 included) by reshard(): the element at flat index k keeps
// its value whatever rank owned it. Saved shards carry the layout they were cut with
// (total, align, world), checked against the new one's total.
// Tests: tests/dist/test_zero_shard.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sk::dist {

struct ShardSegment {
  int64_t param = 0;        // parameter (slot) index
  int64_t param_begin = 0;  // first element within the parameter
  int64_t shard_begin = 0;  // first element within the rank's shard
  int64_t count = 0;
};

class ShardLayout {
 public:
  // numels: element counts of the parameters in slot order; world >= 1; align >= 1.
  ShardLayout(const std::vector<int64_t>& numels, int world, int64_t align = 64);

  int world() const { return world_; }
  int64_t align() const { return align_; }
  int64_t total() const { return total_; }            // sum of numels
  int64_t shard_size() const { return shard_size_; }  // padded elements per rank (equal for all)
  int64_t padded_total() const { return shard_size_ * world_; }
  int64_t param_offset(int64_t i) const { return offsets_.at(size_t(i)); }
  int64_t num_params() const { return int64_t(numels_.size()); }
  // The flat range rank r owns: [begin, end) within [0, total); may be empty for tiny models.
  int64_t owned_begin(int r) const;
  int64_t owned_end(int r) const;
  int owner_of(int64_t flat_index) const;
  std::vector<ShardSegment> segments(int r) const;

 private:
  std::vector<int64_t> numels_, offsets_;
  int world_;
  int64_t align_, total_ = 0, shard_size_ = 0;
};

// shards[r]: the owned range of rank r under `from` (owned_end - owned_begin values). Returns the
// shards of `to` (same total). Throws naming the rank whose shard has the wrong length.
std::vector<std::vector<float>> reshard(const std::vector<std::vector<float>>& shards, const ShardLayout& from,
                                        const ShardLayout& to);

}  // namespace sk::dist
