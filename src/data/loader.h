// DataLoader: batches of token windows from memory-mapped shards (shard.h), for training
// (shuffled, endless epochs, exact resumable cursor) and validation (sequential, one pass).
//
// Windows. A window is T+1 consecutive tokens of one shard (windows never cross shards);
// inputs are its first T tokens, targets its last T. Batch tensors: inputs (B, T) i32 and
// targets (B, T) i32 on the CPU (call .to(device) in the trainer).
//
// Training (Mode::Train). The windows of shard s start at 0, T, 2T, ... while a full window fits:
// floor((n_s - 1) / T) windows; their union over all shards, in shard order, is numbered
// 0 .. N-1. Epoch e visits them in the order of a pseudo-random permutation of [0, N) that depends
// only on (seed, e) (WindowPermutation: a keyed Feistel network with cycle walking: no memory,
// random access, identical on every platform). Global batch g of an epoch is permutation entries
// [g*W*B, (g+1)*W*B) (W = world_size); rank r takes entries [g*W*B + r*B, g*W*B + (r+1)*B), so the
// ranks' batches are disjoint and their union is the global batch. All ranks share the seed.
// An epoch has floor(N / (W*B)) global batches; the N mod (W*B) windows left at the end of a
// permutation are skipped for that epoch (a different set each epoch).
//
// Cursor. (epoch, position): position is the permutation index of the first window of the next
// global batch (a multiple of W*B while W and B stay the same). cursor() is where the loader stands
// after the last batch next() returned (not where the prefetch thread is); restore(cursor) or
// load_state(json) in a fresh loader continues the exact same sequence.
//
// Validation (Mode::Val). Windows start at 0, T, 2T, ... in each shard while at least one target
// is left, shard after shard, no shuffling: every token of the split except the first of each
// shard is a target exactly once. The last window of a shard may be short: its missing positions
// have input 0 and target -1 (the cross-entropy ignore_index). Global batches are cut as in
// training; the last global batch is completed with padding rows (inputs 0, targets -1), so every
// rank runs the same number of batches (ceil(N / (W*B))). Batch::num_targets counts the real
// targets: weight each batch's mean loss by it (or sum losses) for the exact split mean.
// next() returns nullopt after the last batch; reset() starts another pass.
//
// Prefetch: with prefetch > 0 a background thread prepares up to `prefetch` batches ahead (a
// bounded queue); next() takes from it. Results are identical with and without prefetching. The
// thread starts at the first next(), restarts after restore()/reset(), stops in the destructor.
// A DataLoader is used from one thread (the producer thread is internal).
// Tests: tests/data/test_loader.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sk::data {

// A bijection of [0, n) keyed by (seed, epoch).
class WindowPermutation {
 public:
  WindowPermutation(int64_t n, uint64_t seed, uint64_t epoch);
  int64_t operator()(int64_t i) const;  // the i-th element, 0 <= i < n
  int64_t size() const { return n_; }

 private:
  uint64_t encrypt(uint64_t x) const;
  int64_t n_;
  int half_bits_;
  uint64_t mask_;
  uint64_t keys_[6];
};

struct LoaderCursor {
  int64_t epoch = 0;     // training: the epoch; validation: always 0
  int64_t position = 0;  // training: permutation index of the next window; validation: next batch
  bool operator==(const LoaderCursor&) const = default;
};

struct Batch {
  Tensor inputs;                   // (B, T) i32
  Tensor targets;                  // (B, T) i32; -1 only in validation padding
  int64_t num_targets = 0;         // targets != -1
  int64_t epoch = 0;               // the epoch this batch belongs to (training)
  int64_t index = 0;               // global batch index in its epoch / pass
  std::vector<int64_t> windows;    // (B) window numbers (see above); -1 for padding rows
  LoaderCursor next;               // the loader's cursor after this batch
};

struct DataLoaderOptions {
  int64_t batch_size = 8;   // B: windows per rank per step
  int64_t seq_len = 1024;   // T
  int rank = 0;
  int world_size = 1;
  uint64_t seed = 1337;     // the shuffle seed (training), shared by all ranks
  int prefetch = 4;         // batches prepared ahead by a background thread; 0 = none
};

class DataLoader {
 public:
  enum class Mode { Train, Val };
  // Opens (mmaps and validates) every shard; all must have the same version. Throws sk::Error
  // if there are no windows, or (training) fewer than W*B windows.
  DataLoader(const std::vector<std::string>& shard_paths, Mode mode, const DataLoaderOptions& opts);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch of this rank. Training: never empty. Validation: nullopt after the last batch.
  std::optional<Batch> next();

  LoaderCursor cursor() const;
  // Continue from `c` (training: epoch >= 0, 0 <= position <= N; validation: batch index).
  void restore(const LoaderCursor& c);
  void reset() { restore(LoaderCursor{}); }  // validation: start a new pass

  // The cursor plus what it is only valid with: {"epoch", "position", "seed", "num_windows",
  // "seq_len", "mode"}. load_state() checks those against this loader (error naming the key).
  nlohmann::json state() const;
  void load_state(const nlohmann::json& j);

  int64_t num_windows() const;        // N
  int64_t num_tokens() const;         // tokens in all shards
  int64_t batches_per_epoch() const;  // training: floor(N / (W*B)); validation: ceil(N / (W*B))
  const DataLoaderOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sk::data
