// `sparsek prepare` (prepare.h): the split, the ordered multi-threaded encoding pipeline, the
// shard writers of both splits, checksums and the manifest.
//
// Pipeline: one reader thread reads documents in input order into chunks (about 2 MB of text or
// 1024 documents, numbered 0, 1, ...); `threads` encoder threads encode whole chunks; the calling
// thread writes chunk 0, 1, 2, ... in order, so the shards do not depend on the thread count. At
// most 4 * threads chunks are in flight (bounded memory). The first error in any thread stops all
// of them and is rethrown. Tests: tests/data/test_prepare.cpp.
#include "data/prepare.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "data/bpe_sha256.h"
#include "data/prepare_sources.h"
#include "data/progress.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tensor/random.h"
#include "util/check.h"

namespace sk::data {

namespace fs = std::filesystem;

namespace {

constexpr size_t kChunkTextBytes = 2 << 20;
constexpr size_t kChunkDocs = 1024;

struct Doc {
  std::string text;        // cleared once encoded
  int64_t text_bytes = 0;
  int64_t src_bytes = 0;   // source bytes this document accounts for (progress)
  bool val = false;
  std::vector<uint32_t> tokens;  // [eot] + encode(text); empty for an empty document
};

struct Chunk {
  int64_t seq = 0;
  std::vector<Doc> docs;
  size_t text_bytes = 0;
  int64_t extra_src_bytes = 0;  // bytes after the last document of a file (blank JSONL lines)
};

struct Aborted {};  // thrown inside the reader callback when another thread failed

// Shards of one split: NAME_SPLIT_000000.bin, ... with shard_tokens tokens each but the last.
class SplitWriter {
 public:
  struct Record {
    std::string file, path;
    int64_t tokens = 0, bytes = 0;
  };
  SplitWriter(std::string dir, std::string name, std::string split, int version, int64_t shard_tokens)
      : dir_(std::move(dir)), name_(std::move(name)), split_(std::move(split)), version_(version),
        shard_tokens_(shard_tokens) {}

  void add(const std::vector<uint32_t>& toks) {
    size_t at = 0;
    while (at < toks.size()) {
      if (!cur_) {
        const std::string file = shard_file_name(name_, split_, static_cast<int64_t>(shards.size()));
        cur_ = std::make_unique<ShardWriter>((fs::path(dir_) / file).string(), version_);
      }
      const size_t take = std::min<size_t>(toks.size() - at, static_cast<size_t>(shard_tokens_ - cur_->num_tokens()));
      cur_->write(toks.data() + at, take);
      at += take;
      if (cur_->num_tokens() == shard_tokens_) close_shard();
    }
    tokens += static_cast<int64_t>(toks.size());
  }
  void close() {
    if (cur_ && cur_->num_tokens() > 0) close_shard();
    cur_.reset();
  }

  std::vector<Record> shards;
  int64_t documents = 0, tokens = 0, text_bytes = 0;

 private:
  void close_shard() {
    Record r;
    r.path = cur_->path();
    r.file = fs::path(r.path).filename().string();
    r.tokens = cur_->num_tokens();
    r.bytes = cur_->finish();
    shards.push_back(r);
    cur_.reset();
  }
  std::string dir_, name_, split_;
  int version_;
  int64_t shard_tokens_;
  std::unique_ptr<ShardWriter> cur_;
};

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SK_CHECK(f.good(), "prepare: cannot read back ", path, ": ", std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(f.gcount()));
  }
  SK_CHECK(f.eof(), "prepare: read error in ", path);
  return h.hex_digest();
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SK_CHECK(f.good(), "prepare: cannot write ", tmp, ": ", std::strerror(errno));
    f << text;
    f.flush();
    SK_CHECK(f.good(), "prepare: cannot write ", tmp, ": ", std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fs::remove(tmp);
  SK_CHECK(!ec, "prepare: cannot rename ", tmp, " to ", path, ": ", ec.message());
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

void check_config(const PrepareConfig& c) {
  SK_CHECK(!c.name.empty() && c.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789._-") == std::string::npos,
           "prepare: --name '", c.name, "' must be non-empty and use only letters, digits, '.', '_' and '-'");
  SK_CHECK(!c.out_dir.empty(), "prepare: --out is required");
  SK_CHECK(c.val_fraction >= 0 && c.val_fraction < 1, "prepare: --val-fraction ", c.val_fraction,
           " must be in [0, 1)");
  SK_CHECK(c.shard_tokens > 0 && c.shard_tokens <= kShardMaxTokens, "prepare: --shard-tokens ", c.shard_tokens,
           " must be in [1, ", kShardMaxTokens, "]");
  SK_CHECK(c.threads >= 0, "prepare: --threads ", c.threads, " must be >= 0 (0 = all cores)");
  SK_CHECK(!c.jsonl_field.empty(), "prepare: --jsonl-field must not be empty");
}

void check_out_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SK_CHECK(!ec, "prepare: cannot create output directory ", dir, ": ", ec.message());
  SK_CHECK(fs::is_directory(dir), "prepare: output ", dir, " is not a directory");
  const std::string probe = (fs::path(dir) / (".sparsek-write-test-" + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SK_CHECK(fd >= 0, "prepare: output directory ", dir, " is not writable: ", std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

// Removes DIR/NAME_{train,val}_<6 or more digits>.bin files that this run did not write.
int remove_stale_shards(const std::string& dir, const std::string& name, const std::set<std::string>& keep) {
  int removed = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (!e.is_regular_file() || keep.count(f) || f.size() < 4 || f.compare(f.size() - 4, 4, ".bin") != 0) continue;
    for (const char* split : {"_train_", "_val_"}) {
      const std::string prefix = name + split;
      if (f.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string digits = f.substr(prefix.size(), f.size() - 4 - prefix.size());
      if (digits.size() >= 6 && digits.find_first_not_of("0123456789") == std::string::npos)
        removed += fs::remove(e.path());
    }
  }
  return removed;
}

}  // namespace

std::vector<char> choose_val_documents(int64_t n, double val_fraction, uint64_t seed) {
  SK_CHECK(n >= 0, "prepare: ", n, " documents");
  std::vector<char> val(static_cast<size_t>(n), 0);
  if (n < 2 || val_fraction <= 0) return val;
  const int64_t k = std::clamp<int64_t>(std::llround(val_fraction * static_cast<double>(n)), 1, n - 1);
  // The first k entries of a seeded Fisher-Yates shuffle of 0..n-1.
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  Rng rng(seed);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - i)));
    std::swap(idx[i], idx[j]);
    val[idx[i]] = 1;
  }
  return val;
}

PrepareResult prepare(const PrepareConfig& config) {
  check_config(config);
  const Tokenizer tok = Tokenizer::load(config.tokenizer);
  return prepare(config, tok);
}

PrepareResult prepare(const PrepareConfig& cfg, const Tokenizer& tok) {
  const auto t0 = std::chrono::steady_clock::now();
  check_config(cfg);
  const ScanResult scan = scan_inputs(cfg.inputs, cfg.globs, cfg.format);
  check_out_dir(cfg.out_dir);
  const std::vector<char> is_val = choose_val_documents(scan.documents, cfg.val_fraction, cfg.seed);
  const int version = shard_version_for_vocab(tok.vocab_size());
  const uint32_t eot = tok.eot_id();
  const int threads = cfg.threads > 0 ? cfg.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  Progress progress("prepare " + cfg.name, scan.bytes, cfg.progress);
  // Shards are written into a staging directory inside DIR and moved into place only when the
  // whole run succeeded: a failed run leaves an earlier run's shards and manifest untouched.
  const std::string staging =
      (fs::path(cfg.out_dir) / ("." + cfg.name + ".partial-" + std::to_string(::getpid()))).string();
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } staging_guard{staging};
  {
    std::error_code ec;
    fs::remove_all(staging, ec);
    fs::create_directory(staging, ec);
    SK_CHECK(!ec, "prepare: cannot create ", staging, ": ", ec.message());
  }
  SplitWriter val(staging, cfg.name, "val", version, cfg.shard_tokens);
  SplitWriter train(staging, cfg.name, "train", version, cfg.shard_tokens);
  int64_t empty_docs = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Chunk> todo;
  std::map<int64_t, Chunk> done;
  int64_t in_flight = 0, total_chunks = -1;
  const int64_t max_in_flight = 4 * static_cast<int64_t>(threads);
  std::exception_ptr error;
  bool abort = false;
  auto fail = [&](std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (!error) error = e;
      abort = true;
    }
    cv.notify_all();
  };

  std::thread reader([&] {
    try {
      Chunk cur;
      int64_t seq = 0, doc_index = 0;
      auto push = [&] {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return abort || in_flight < max_in_flight; });
        if (abort) throw Aborted{};
        cur.seq = seq++;
        todo.push_back(std::move(cur));
        ++in_flight;
        lk.unlock();
        cv.notify_all();
        cur = Chunk{};
      };
      for (const SourceFile& file : scan.files) {
        const int64_t first = doc_index;
        const int64_t trailing = read_documents(file, cfg.jsonl_field, [&](std::string&& text, int64_t src_bytes) {
          SK_CHECK(doc_index < scan.documents, "prepare: ", file.path, " changed while it was read (more documents)");
          Doc d;
          d.text_bytes = static_cast<int64_t>(text.size());
          d.text = std::move(text);
          d.src_bytes = src_bytes;
          d.val = is_val[doc_index++];
          cur.text_bytes += d.text.size();
          cur.docs.push_back(std::move(d));
          if (cur.text_bytes >= kChunkTextBytes || cur.docs.size() >= kChunkDocs) push();
        });
        cur.extra_src_bytes += trailing;
        SK_CHECK(doc_index - first == file.documents, "prepare: ", file.path, " changed while it was read (",
                 file.documents, " documents when scanned, ", doc_index - first, " now)");
      }
      if (!cur.docs.empty() || cur.extra_src_bytes > 0) push();
      {
        std::lock_guard<std::mutex> lk(mu);
        total_chunks = seq;
      }
      cv.notify_all();
    } catch (const Aborted&) {
    } catch (...) {
      fail(std::current_exception());
    }
  });

  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&] {
      for (;;) {
        Chunk c;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [&] { return abort || !todo.empty() || total_chunks >= 0; });
          if (abort || todo.empty()) return;
          c = std::move(todo.front());
          todo.pop_front();
        }
        try {
          for (Doc& d : c.docs) {
            if (d.text.empty()) continue;
            std::vector<uint32_t> ids = tok.encode(d.text);
            d.tokens.reserve(ids.size() + 1);
            d.tokens.push_back(eot);
            d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
            std::string().swap(d.text);
          }
        } catch (...) {
          fail(std::current_exception());
          return;
        }
        {
          std::lock_guard<std::mutex> lk(mu);
          done.emplace(c.seq, std::move(c));
        }
        cv.notify_all();
      }
    });
  }

  try {
    for (int64_t next = 0;; ++next) {
      Chunk c;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return abort || done.count(next) || total_chunks == next; });
        if (abort || total_chunks == next) break;
        auto it = done.find(next);
        c = std::move(it->second);
        done.erase(it);
      }
      int64_t src = c.extra_src_bytes, toks = 0;
      for (const Doc& d : c.docs) {
        src += d.src_bytes;
        if (d.tokens.empty()) {
          ++empty_docs;
          continue;
        }
        SplitWriter& w = d.val ? val : train;
        w.add(d.tokens);
        w.documents += 1;
        w.text_bytes += d.text_bytes;
        toks += static_cast<int64_t>(d.tokens.size());
      }
      progress.add(src, toks);
      {
        std::lock_guard<std::mutex> lk(mu);
        --in_flight;
      }
      cv.notify_all();
    }
  } catch (...) {
    fail(std::current_exception());
  }
  reader.join();
  for (auto& t : workers) t.join();
  if (error) std::rethrow_exception(error);  // the writers' destructors remove unfinished temporaries

  val.close();
  train.close();
  progress.finish();
  SK_CHECK(train.tokens > 0, "prepare: no training tokens (", scan.documents, " documents, ", empty_docs,
           " of them empty, ", val.documents, " in validation)");

  // Checksums, in parallel.
  std::vector<const SplitWriter::Record*> records;
  for (const auto& r : val.shards) records.push_back(&r);
  for (const auto& r : train.shards) records.push_back(&r);
  std::vector<std::string> digests(records.size());
  {
    std::atomic<size_t> next{0};
    std::exception_ptr sha_error;
    std::mutex sha_mu;
    std::vector<std::thread> pool;
    for (int w = 0; w < std::min<int>(threads, static_cast<int>(records.size())); ++w)
      pool.emplace_back([&] {
        for (size_t i; (i = next++) < records.size();) {
          try {
            digests[i] = sha256_file(records[i]->path);
          } catch (...) {
            std::lock_guard<std::mutex> lk(sha_mu);
            sha_error = std::current_exception();
          }
        }
      });
    for (auto& t : pool) t.join();
    if (sha_error) std::rethrow_exception(sha_error);
  }

  std::set<std::string> keep;
  nlohmann::ordered_json shards = nlohmann::ordered_json::array();
  for (size_t i = 0; i < records.size(); ++i) {
    const std::string dest = (fs::path(cfg.out_dir) / records[i]->file).string();
    SK_CHECK(::rename(records[i]->path.c_str(), dest.c_str()) == 0, "prepare: cannot move ", records[i]->path,
             " to ", dest, ": ", std::strerror(errno));
    keep.insert(records[i]->file);
    shards.push_back({{"file", records[i]->file},
                      {"split", i < val.shards.size() ? "val" : "train"},
                      {"tokens", records[i]->tokens},
                      {"bytes", records[i]->bytes},
                      {"sha256", digests[i]}});
  }
  fsync_dir(cfg.out_dir);
  const int stale = remove_stale_shards(cfg.out_dir, cfg.name, keep);

  using ojson = nlohmann::ordered_json;
  ojson sources = ojson::array();
  for (const Source& s : scan.sources)
    sources.push_back({{"path", s.path}, {"type", s.type}, {"files", s.files}, {"bytes", s.bytes},
                       {"documents", s.documents}});
  auto split_json = [](const SplitWriter& w) {
    return ojson{{"documents", w.documents}, {"tokens", w.tokens}, {"text_bytes", w.text_bytes},
                 {"shards", w.shards.size()}};
  };
  ojson m;
  m["name"] = cfg.name;
  m["command"] = cfg.command_line;
  m["sparsek"] = cfg.sparsek_build;
  m["tokenizer"] = {{"path", cfg.tokenizer},
                    {"name", tok.name()},
                    {"hash", tok.hash()},
                    {"vocab_size", tok.vocab_size()},
                    {"eot_id", eot}};
  m["shard_format"] = {{"layout", "llm.c: 256 x int32 header (magic, version, token count), then the tokens"},
                       {"magic", kShardMagic},
                       {"version", version},
                       {"token_bytes", shard_token_bytes(version)},
                       {"header_bytes", kShardHeaderBytes}};
  m["split"] = {{"seed", cfg.seed},
                {"val_fraction", cfg.val_fraction},
                {"method", "round(val_fraction * documents) documents (at least 1 when there are 2 or more, at most "
                           "all but 1), chosen by a seeded Fisher-Yates shuffle of the document numbers"}};
  m["splits"] = {{"train", split_json(train)}, {"val", split_json(val)}};
  m["documents"] = {{"total", scan.documents},
                    {"empty_skipped", empty_docs},
                    {"empty_files_skipped", scan.empty_files},
                    {"symlinks_skipped", scan.symlinks_skipped},
                    {"separator", "the end-of-text token, prepended to every document"}};
  m["sources"] = sources;
  m["inputs"] = {{"bytes", scan.bytes}, {"globs", cfg.globs}, {"format", cfg.format},
                 {"jsonl_field", cfg.jsonl_field}};
  m["shard_tokens"] = cfg.shard_tokens;
  m["shards"] = shards;
  m["run"] = {{"threads", threads}, {"seconds", std::round(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 100) / 100},
              {"stale_shards_removed", stale}};

  PrepareResult res;
  res.manifest_path = (fs::path(cfg.out_dir) / (cfg.name + "_manifest.json")).string();
  write_text_atomic(res.manifest_path, m.dump(2) + "\n");
  res.manifest = std::move(m);
  return res;
}

}  // namespace sk::data
