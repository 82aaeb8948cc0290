// A progress line on stderr for long data jobs (`sparsek prepare`): bytes done / total, tokens,
// MB/s and ETA. On a terminal it redraws one line 4 times a second; when stderr is not a TTY
// (logs, CI) it prints a plain line every 5 seconds instead. Both end with a final summary line.
// A background thread prints; add() is cheap (two atomics) and may be called from any thread.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace sk::data {

class Progress {
 public:
  Progress(std::string label, int64_t total_bytes, bool enabled);
  ~Progress();  // stops without the final line (an error path), ending a redrawn line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add(int64_t bytes, int64_t tokens) {
    bytes_ += bytes;
    tokens_ += tokens;
  }
  void finish();  // stops the thread, prints the final line (idempotent)

  double seconds() const;

 private:
  void stop();
  void print(bool final);
  std::string label_;
  int64_t total_;
  bool enabled_, tty_;
  std::atomic<int64_t> bytes_{0}, tokens_{0};
  std::chrono::steady_clock::time_point start_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, finished_ = false, printed_ = false;
};

// "1.23 MB", "456 B"; "1m05s"
std::string format_bytes(double bytes);
std::string format_duration(double seconds);

}  // namespace sk::data
