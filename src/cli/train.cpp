// `sparsek train CONFIG [--set k=v ...]`: loads and validates the run config, then runs the
// training loop (src/train/trainer.h). SIGINT / SIGTERM: the current step finishes, a checkpoint
// is saved and the run stops (a second signal kills at once).
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>

#include "cli/commands.h"
#include "config/run_config.h"
#include "train/trainer.h"

namespace sk::cli {

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
}  // namespace

void run_train(const ConfigShowOptions& o) {
  const config::RunConfig cfg = config::load_run_config(o.config, o.overrides);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESETHAND;  // the second signal has the default effect
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  train::TrainOptions opts;
  opts.should_stop = [](int64_t) { return g_stop_signal.load() != 0; };
  const train::TrainResult r = train::train(cfg, opts);
  if (r.stopped) spdlog::warn("train: stopped by signal {} at step {}", g_stop_signal.load(), r.last_step);
}

}  // namespace sk::cli
