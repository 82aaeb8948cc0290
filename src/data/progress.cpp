// Progress line on stderr (progress.h).
#include "data/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sk::data {

std::string format_bytes(double b) {
  char s[32];
  if (b >= 1e9) std::snprintf(s, sizeof s, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(s, sizeof s, "%.1f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(s, sizeof s, "%.1f kB", b / 1e3);
  else std::snprintf(s, sizeof s, "%.0f B", b);
  return s;
}

std::string format_duration(double sec) {
  if (!std::isfinite(sec) || sec < 0) return "?";
  const auto t = static_cast<long long>(sec + 0.5);
  char s[32];
  if (t >= 3600) std::snprintf(s, sizeof s, "%lldh%02lldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(s, sizeof s, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(s, sizeof s, "%llds", t);
  return s;
}

Progress::Progress(std::string label, int64_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(total_bytes), enabled_(enabled), tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {
  if (!enabled_) return;
  thread_ = std::thread([this] {
    const auto period = tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000);
    std::unique_lock<std::mutex> lk(mu_);
    while (!cv_.wait_for(lk, period, [this] { return stop_; })) print(false);
  });
}

Progress::~Progress() {
  if (finished_) return;
  stop();
  if (enabled_ && tty_ && printed_) std::fputc('\n', stderr);
}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::stop() {
  finished_ = true;
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Progress::finish() {
  if (finished_) return;
  stop();
  if (enabled_) print(true);
}

void Progress::print(bool final) {
  const double t = seconds();
  const auto done = static_cast<double>(bytes_.load());
  const auto toks = static_cast<double>(tokens_.load());
  const double frac = total_ > 0 ? std::min(1.0, done / static_cast<double>(total_)) : 1.0;
  const double rate = t > 0 ? done / t : 0;
  char line[256];
  char tok[32];
  if (toks >= 1e6) std::snprintf(tok, sizeof tok, "%.2fM", toks / 1e6);
  else std::snprintf(tok, sizeof tok, "%.0f", toks);
  char bar[32] = "";
  if (tty_) {
    const int width = 24, filled = static_cast<int>(frac * width);
    bar[0] = '[';
    for (int i = 0; i < width; ++i) bar[1 + i] = i < filled ? '#' : '.';
    bar[width + 1] = ']';
    bar[width + 2] = ' ';
    bar[width + 3] = 0;
  }
  const std::string when = format_duration(final ? t : rate > 0 ? (static_cast<double>(total_) - done) / rate : NAN);
  std::snprintf(line, sizeof line, "%s: %s%5.1f%% %s / %s, %s tokens, %.2f MB/s, %s %s", label_.c_str(), bar,
                100 * frac, format_bytes(done).c_str(), format_bytes(static_cast<double>(total_)).c_str(), tok,
                rate / 1e6, final ? "in" : "ETA", when.c_str());
  if (tty_) std::fprintf(stderr, "\r%s\x1b[K%s", line, final ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
  printed_ = true;
}

}  // namespace sk::data
