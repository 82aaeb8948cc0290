// ZeRO-1 shard arithmetic (zero_shard.h).
#include "dist/zero_shard.h"

#include <algorithm>

#include "util/check.h"

namespace sk::dist {

ShardLayout::ShardLayout(const std::vector<int64_t>& numels, int world, int64_t align)
    : numels_(numels), world_(world), align_(align) {
  SK_CHECK(world >= 1, "ShardLayout: world size must be >= 1, got ", world);
  SK_CHECK(align >= 1, "ShardLayout: alignment must be >= 1, got ", align);
  for (size_t i = 0; i < numels.size(); ++i) {
    SK_CHECK(numels[i] >= 0, "ShardLayout: parameter ", i, " has a negative size ", numels[i]);
    offsets_.push_back(total_);
    total_ += numels[i];
  }
  const int64_t per_rank = (total_ + world - 1) / world;
  shard_size_ = std::max<int64_t>(align, (per_rank + align - 1) / align * align);
}

int64_t ShardLayout::owned_begin(int r) const {
  SK_CHECK(r >= 0 && r < world_, "ShardLayout: rank ", r, " is outside the world of ", world_);
  return std::min(total_, int64_t(r) * shard_size_);
}
int64_t ShardLayout::owned_end(int r) const {
  SK_CHECK(r >= 0 && r < world_, "ShardLayout: rank ", r, " is outside the world of ", world_);
  return std::min(total_, int64_t(r + 1) * shard_size_);
}

int ShardLayout::owner_of(int64_t k) const {
  SK_CHECK(k >= 0 && k < total_, "ShardLayout: flat index ", k, " is outside [0, ", total_, ")");
  return int(k / shard_size_);
}

std::vector<ShardSegment> ShardLayout::segments(int r) const {
  const int64_t b = owned_begin(r), e = owned_end(r);
  std::vector<ShardSegment> out;
  // The first parameter ending after b, then every parameter until e.
  auto it = std::upper_bound(offsets_.begin(), offsets_.end(), b);
  size_t i = it == offsets_.begin() ? 0 : size_t(it - offsets_.begin() - 1);
  for (; i < numels_.size() && offsets_[i] < e; ++i) {
    const int64_t lo = std::max(b, offsets_[i]), hi = std::min(e, offsets_[i] + numels_[i]);
    if (hi <= lo) continue;
    out.push_back({int64_t(i), lo - offsets_[i], lo - b, hi - lo});
  }
  return out;
}

std::vector<std::vector<float>> reshard(const std::vector<std::vector<float>>& shards, const ShardLayout& from,
                                        const ShardLayout& to) {
  SK_CHECK(from.total() == to.total(), "reshard: the saved optimizer state covers ", from.total(),
           " elements but this model has ", to.total(), " (a different model)");
  SK_CHECK(int(shards.size()) == from.world(), "reshard: ", shards.size(), " shards given for a world of ", from.world());
  for (int r = 0; r < from.world(); ++r)
    SK_CHECK(int64_t(shards[r].size()) == from.owned_end(r) - from.owned_begin(r), "reshard: the shard of rank ", r,
             " holds ", shards[r].size(), " values, its layout owns ", from.owned_end(r) - from.owned_begin(r));
  std::vector<std::vector<float>> out(size_t(to.world()));
  for (int r = 0; r < to.world(); ++r) {
    const int64_t b = to.owned_begin(r), e = to.owned_end(r);
    out[r].resize(size_t(e - b));
    // Copy run by run: each maximal piece of [b, e) owned by one old rank.
    for (int64_t k = b; k < e;) {
      const int o = from.owner_of(k);
      const int64_t run_end = std::min(e, from.owned_end(o));
      std::copy(shards[o].begin() + (k - from.owned_begin(o)), shards[o].begin() + (run_end - from.owned_begin(o)),
                out[r].begin() + (k - b));
      k = run_end;
    }
  }
  return out;
}

}  // namespace sk::dist
