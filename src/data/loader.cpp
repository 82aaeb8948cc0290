// DataLoader (loader.h): window numbering, the keyed permutation, batch assembly from mmapped
// shards, the resumable cursor, and the prefetch thread (a bounded queue of ready batches).
// Tests: tests/data/test_loader.cpp.
#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "data/shard.h"
#include "util/check.h"

namespace sk::data {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
  z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
  return z ^ (z >> 33);
}

int64_t json_int(const nlohmann::json& j, const char* key) {
  SK_CHECK(j.is_object() && j.contains(key) && j[key].is_number_integer(), "loader state: missing or non-integer key '",
           key, "' in ", j.dump());
  return j[key].get<int64_t>();
}

}  // namespace

// ---- WindowPermutation ---------------------------------------------------------------------------
// A balanced Feistel network (6 rounds, splitmix-derived round keys) permutes [0, 4^h) with
// 4^h >= n; "cycle walking" (re-encrypting until the value falls below n) restricts it to a
// permutation of [0, n). 4^h < 4n, so on average fewer than 4 rounds of walking are needed.

WindowPermutation::WindowPermutation(int64_t n, uint64_t seed, uint64_t epoch) : n_(n) {
  SK_CHECK(n > 0, "WindowPermutation: n = ", n, " (must be > 0)");
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) < n) ++bits;
  half_bits_ = (bits + 1) / 2;
  mask_ = (uint64_t{1} << half_bits_) - 1;
  uint64_t s = seed ^ mix64(epoch + 0x5851f42d4c957f2dull);
  for (auto& k : keys_) k = splitmix64(s);
}

uint64_t WindowPermutation::encrypt(uint64_t x) const {
  uint64_t l = x >> half_bits_, r = x & mask_;
  for (uint64_t k : keys_) {
    const uint64_t f = mix64(r ^ k) & mask_;
    const uint64_t nl = r;
    r = l ^ f;
    l = nl;
  }
  return (l << half_bits_) | r;
}

int64_t WindowPermutation::operator()(int64_t i) const {
  SK_CHECK(i >= 0 && i < n_, "WindowPermutation: index ", i, " out of range [0, ", n_, ")");
  uint64_t x = static_cast<uint64_t>(i);
  do {
    x = encrypt(x);
  } while (x >= static_cast<uint64_t>(n_));
  return static_cast<int64_t>(x);
}

// ---- DataLoader ----------------------------------------------------------------------------------

struct DataLoader::Impl {
  Mode mode;
  DataLoaderOptions opts;
  std::vector<Shard> shards;
  std::vector<int64_t> prefix;  // (S+1): windows before shard s
  int64_t n_windows = 0;
  int64_t n_tokens = 0;
  int64_t global_batch = 0;     // W*B
  LoaderCursor cursor;          // after the last batch handed out by next()

  // prefetch
  struct Item {
    std::optional<Batch> batch;  // nullopt: end of the validation pass (or error)
    std::exception_ptr error;
  };
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Item> queue;
  bool stop = false;

  int64_t batches_per_epoch() const {
    return mode == Mode::Train ? n_windows / global_batch : (n_windows + global_batch - 1) / global_batch;
  }

  // Shard and first token of window w.
  std::pair<size_t, int64_t> locate(int64_t w) const {
    const auto it = std::upper_bound(prefix.begin(), prefix.end(), w);
    const size_t s = static_cast<size_t>(it - prefix.begin()) - 1;
    return {s, (w - prefix[s]) * opts.seq_len};
  }

  // Fills row `row` of inputs/targets from window w (-1: a padding row).
  int64_t fill_row(int64_t w, int64_t row, int32_t* in, int32_t* tg, std::vector<int32_t>& buf) const {
    const int64_t T = opts.seq_len;
    int32_t* in_row = in + row * T;
    int32_t* tg_row = tg + row * T;
    if (w < 0) {
      std::fill(in_row, in_row + T, 0);
      std::fill(tg_row, tg_row + T, -1);
      return 0;
    }
    const auto [s, start] = locate(w);
    const int64_t len = std::min<int64_t>(T + 1, shards[s].num_tokens() - start);  // >= 2
    shards[s].copy_tokens(start, len, buf.data());
    for (int64_t j = 0; j < T; ++j) {
      in_row[j] = j < len ? buf[j] : 0;
      tg_row[j] = j + 1 < len ? buf[j + 1] : -1;
    }
    return len - 1;
  }

  // The batch at cursor c (pure: depends only on c and the options), or nullopt past the end of
  // a validation pass.
  std::optional<Batch> make(const LoaderCursor& c) const {
    const int64_t B = opts.batch_size, T = opts.seq_len;
    Batch b;
    b.inputs = Tensor::empty({B, T}, DType::I32);
    b.targets = Tensor::empty({B, T}, DType::I32);
    b.windows.resize(static_cast<size_t>(B));
    std::vector<int32_t> buf(static_cast<size_t>(T + 1));
    int32_t* in = b.inputs.data<int32_t>();
    int32_t* tg = b.targets.data<int32_t>();
    if (mode == Mode::Train) {
      const WindowPermutation perm(n_windows, opts.seed, static_cast<uint64_t>(c.epoch));
      for (int64_t i = 0; i < B; ++i) {
        const int64_t w = perm(c.position + opts.rank * B + i);
        b.windows[i] = w;
        b.num_targets += fill_row(w, i, in, tg, buf);
      }
      b.epoch = c.epoch;
      b.index = c.position / global_batch;
      LoaderCursor nx{c.epoch, c.position + global_batch};
      if (nx.position + global_batch > n_windows) nx = {c.epoch + 1, 0};
      b.next = nx;
      return b;
    }
    if (c.position >= batches_per_epoch()) return std::nullopt;
    for (int64_t i = 0; i < B; ++i) {
      const int64_t w = c.position * global_batch + opts.rank * B + i;
      b.windows[i] = w < n_windows ? w : -1;
      b.num_targets += fill_row(b.windows[i], i, in, tg, buf);
    }
    b.index = c.position;
    b.next = {0, c.position + 1};
    return b;
  }

  void start_thread() {
    stop = false;
    thread = std::thread([this, c = cursor]() mutable { produce(c); });
  }

  void stop_thread() {
    if (thread.joinable()) {
      {
        std::lock_guard<std::mutex> lk(mu);
        stop = true;
      }
      cv.notify_all();
      thread.join();
    }
    queue.clear();
    stop = false;
  }

  void produce(LoaderCursor c) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return stop || static_cast<int>(queue.size()) < opts.prefetch; });
        if (stop) return;
      }
      Item item;
      try {
        item.batch = make(c);
        if (item.batch) c = item.batch->next;
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool last = !item.batch;  // end of pass or error: the item stays at the queue's end
      {
        std::lock_guard<std::mutex> lk(mu);
        if (stop) return;
        queue.push_back(std::move(item));
      }
      cv.notify_all();
      if (last) return;
    }
  }
};

DataLoader::DataLoader(const std::vector<std::string>& shard_paths, Mode mode, const DataLoaderOptions& opts)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.mode = mode;
  m.opts = opts;
  const char* what = mode == Mode::Train ? "train loader" : "val loader";
  SK_CHECK(opts.batch_size > 0, what, ": batch_size ", opts.batch_size, " must be > 0");
  SK_CHECK(opts.seq_len > 0, what, ": seq_len ", opts.seq_len, " must be > 0");
  SK_CHECK(opts.world_size > 0 && opts.rank >= 0 && opts.rank < opts.world_size, what, ": rank ", opts.rank,
           " not in [0, world_size ", opts.world_size, ")");
  SK_CHECK(opts.prefetch >= 0, what, ": prefetch ", opts.prefetch, " must be >= 0");
  SK_CHECK(!shard_paths.empty(), what, ": no shards given");
  m.global_batch = opts.batch_size * opts.world_size;
  m.prefix.push_back(0);
  const int64_t T = opts.seq_len;
  for (const auto& p : shard_paths) {
    m.shards.push_back(Shard::open(p));
    const Shard& s = m.shards.back();
    SK_CHECK(s.version() == m.shards.front().version(), what, ": shard ", p, " has version ", s.version(), " but ",
             shard_paths.front(), " has version ", m.shards.front().version());
    const int64_t n = s.num_tokens();
    const int64_t w = mode == Mode::Train ? (n >= T + 1 ? (n - 1) / T : 0) : (n >= 2 ? (n - 1 + T - 1) / T : 0);
    m.prefix.push_back(m.prefix.back() + w);
    m.n_tokens += n;
  }
  m.n_windows = m.prefix.back();
  SK_CHECK(m.n_windows > 0, what, ": no window of ", T + 1, " tokens in ", shard_paths.size(), " shard(s) (",
           m.n_tokens, " tokens in all, starting with ", shard_paths.front(), ")");
  if (mode == Mode::Train)
    SK_CHECK(m.n_windows >= m.global_batch, what, ": ", m.n_windows, " windows of ", T + 1,
             " tokens, fewer than one global batch (world_size ", opts.world_size, " x batch_size ", opts.batch_size,
             " = ", m.global_batch, ")");
}

DataLoader::~DataLoader() { impl_->stop_thread(); }

std::optional<Batch> DataLoader::next() {
  Impl& m = *impl_;
  if (m.opts.prefetch == 0) {
    auto b = m.make(m.cursor);
    if (b) m.cursor = b->next;
    return b;
  }
  if (!m.thread.joinable()) m.start_thread();
  std::unique_lock<std::mutex> lk(m.mu);
  m.cv.wait(lk, [&] { return !m.queue.empty(); });
  Impl::Item& front = m.queue.front();
  if (front.error) std::rethrow_exception(front.error);  // left in place: next() throws again
  if (!front.batch) return std::nullopt;                  // end of pass, left in place
  Batch b = std::move(*front.batch);
  m.queue.pop_front();
  lk.unlock();
  m.cv.notify_all();
  m.cursor = b.next;
  return b;
}

LoaderCursor DataLoader::cursor() const { return impl_->cursor; }

void DataLoader::restore(const LoaderCursor& c) {
  Impl& m = *impl_;
  if (m.mode == Mode::Train) {
    SK_CHECK(c.epoch >= 0 && c.position >= 0 && c.position <= m.n_windows, "train loader: cursor (epoch ", c.epoch,
             ", position ", c.position, ") out of range (", m.n_windows, " windows per epoch)");
  } else {
    SK_CHECK(c.epoch == 0 && c.position >= 0 && c.position <= m.batches_per_epoch(), "val loader: cursor (epoch ",
             c.epoch, ", position ", c.position, ") out of range (", m.batches_per_epoch(), " batches per pass)");
  }
  m.stop_thread();
  m.cursor = c;
  if (m.mode == Mode::Train && c.position + m.global_batch > m.n_windows) m.cursor = {c.epoch + 1, 0};
}

nlohmann::json DataLoader::state() const {
  const Impl& m = *impl_;
  return {{"mode", m.mode == Mode::Train ? "train" : "val"},
          {"epoch", m.cursor.epoch},
          {"position", m.cursor.position},
          {"seed", m.opts.seed},
          {"num_windows", m.n_windows},
          {"seq_len", m.opts.seq_len},
          {"batch_size", m.opts.batch_size},
          {"world_size", m.opts.world_size}};
}

void DataLoader::load_state(const nlohmann::json& j) {
  const Impl& m = *impl_;
  const std::string mode = m.mode == Mode::Train ? "train" : "val";
  SK_CHECK(j.is_object() && j.contains("mode") && j["mode"].is_string() && j["mode"] == mode,
           "loader state: key 'mode' is ", (j.is_object() && j.contains("mode") ? j["mode"].dump() : "missing"),
           ", this loader is '", mode, "'");
  SK_CHECK(j.contains("seed") && j["seed"].is_number_unsigned() && j["seed"].get<uint64_t>() == m.opts.seed,
           "loader state: key 'seed' is ", (j.contains("seed") ? j["seed"].dump() : "missing"), ", this loader has ",
           m.opts.seed);
  const int64_t nw = json_int(j, "num_windows");
  SK_CHECK(nw == m.n_windows, "loader state: key 'num_windows' is ", nw, ", this loader has ", m.n_windows,
           " (different shards or seq_len)");
  const int64_t T = json_int(j, "seq_len");
  SK_CHECK(T == m.opts.seq_len, "loader state: key 'seq_len' is ", T, ", this loader has ", m.opts.seq_len);
  restore({json_int(j, "epoch"), json_int(j, "position")});
}

int64_t DataLoader::num_windows() const { return impl_->n_windows; }
int64_t DataLoader::num_tokens() const { return impl_->n_tokens; }
int64_t DataLoader::batches_per_epoch() const { return impl_->batches_per_epoch(); }
const DataLoaderOptions& DataLoader::options() const { return impl_->opts; }

}  // namespace sk::data
