// The local launcher (launcher.h): fork/exec, signal forwarding, fail-fast.
#include "dist/launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "util/check.h"

extern char** environ;

namespace sk::dist {

namespace {

std::atomic<int> g_forward_signal{0};
extern "C" void on_launcher_signal(int sig) { g_forward_signal = sig; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "stopped (status " + std::to_string(status) + ")";
}

// The parent's environment without the world variables, plus this rank's.
std::vector<std::string> child_environment(const LaunchOptions& o, int rank) {
  static const char* kOwned[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=",
                                 "MASTER_PORT=", "NCCL_NVLS_ENABLE="};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    bool owned = false;
    for (const char* k : kOwned) owned = owned || std::strncmp(*e, k, std::strlen(k)) == 0;
    if (!owned) env.push_back(*e);
  }
  env.push_back("RANK=" + std::to_string(rank));
  env.push_back("WORLD_SIZE=" + std::to_string(o.nproc));
  env.push_back("LOCAL_RANK=" + std::to_string(rank));
  env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(o.nproc));
  env.push_back("MASTER_ADDR=" + o.master_addr);
  env.push_back("MASTER_PORT=" + std::to_string(o.master_port));
  env.push_back("NCCL_NVLS_ENABLE=0");
  return env;
}

}  // namespace

LaunchResult launch(const LaunchOptions& o) {
  SK_CHECK(o.nproc >= 1, "launch: --nproc must be >= 1, got ", o.nproc);
  SK_CHECK(!o.argv.empty(), "launch: no program to run");
  SK_CHECK(o.master_port >= 1 && o.master_port <= 65535, "launch: master port ", o.master_port, " is not a TCP port");
  struct sigaction sa {}, old_int {}, old_term {}, old_hup {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGHUP, &sa, &old_hup);
  g_forward_signal = 0;

  std::vector<pid_t> pids(size_t(o.nproc), -1);
  std::vector<bool> done(size_t(o.nproc), false);
  for (int r = 0; r < o.nproc; ++r) {
    std::vector<std::string> env_s = child_environment(o, r);
    std::vector<char*> envp, argv;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = o.argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);  // its own process group: signals reach the rank and whatever it started
      ::execve(argv[0], argv.data(), envp.data());
      std::fprintf(stderr, "launch: rank %d: cannot run %s: %s\n", r, argv[0], std::strerror(errno));
      ::_exit(127);
    }
    SK_CHECK(pid > 0, "launch: fork failed for rank ", r, ": ", std::strerror(errno));
    ::setpgid(pid, pid);  // also here, so no signal can come before the child has done it
    pids[size_t(r)] = pid;
  }

  LaunchResult res;
  int alive = o.nproc;
  bool terminating = false, settling = false;
  std::chrono::steady_clock::time_point kill_at{}, settle_until{};
  auto signal_alive = [&](int sig) {
    for (int r = 0; r < o.nproc; ++r)
      if (!done[size_t(r)]) ::kill(-pids[size_t(r)], sig);
  };
  // The first failure is reported, except that a rank killed by a signal (that this launcher did
  // not send) during the settle window after a rank merely exited non-zero is reported instead:
  // when a rank is SIGKILLed its peers fail right away ("rank 1 closed its connection") and may be
  // reaped first; the killed rank is the cause.
  auto start_terminating = [&] {
    settling = false;
    if (alive == 0 || terminating) return;
    std::fprintf(stderr, "launch: %s; terminating the other ranks\n", res.message.c_str());
    signal_alive(SIGTERM);
    terminating = true;
    kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(o.grace_seconds * 1000));
  };
  while (alive > 0) {
    if (const int sig = g_forward_signal.exchange(0)) signal_alive(sig);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < o.nproc; ++r) {
        if (pids[size_t(r)] != pid || done[size_t(r)]) continue;
        done[size_t(r)] = true;
        --alive;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (ok) continue;
        const bool cause = res.failed_rank < 0 || (settling && WIFSIGNALED(status));
        if (!cause) continue;
        res.failed_rank = r;
        res.message = "rank " + std::to_string(r) + " (pid " + std::to_string(pid) + ") " + describe_status(status);
        res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (WIFSIGNALED(status) || o.settle_seconds <= 0) {
          start_terminating();
        } else if (!settling && !terminating) {
          settling = true;
          settle_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(o.settle_seconds * 1000));
        }
      }
      continue;
    }
    if (settling && std::chrono::steady_clock::now() >= settle_until) start_terminating();
    if (terminating && std::chrono::steady_clock::now() >= kill_at) {
      signal_alive(SIGKILL);
      terminating = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGHUP, &old_hup, nullptr);
  return res;
}

}  // namespace sk::dist
