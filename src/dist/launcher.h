// The local launcher behind `sparsek launch --nproc N CONFIG [--set ...]`: one child process per
// rank, each with the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT) and NCCL_NVLS_ENABLE=0 (NVLink multicast off) in its environment.
// Each child leads its own process group; SIGINT / SIGTERM / SIGHUP received by the launcher are
// forwarded to every child's group. When a child
// exits non-zero or is killed by a signal, the others get SIGTERM, then SIGKILL after
// `grace_seconds`, and launch() returns non-zero with a message naming the rank and how it ended
// (a rank killed by a signal within `settle_seconds` of another's non-zero exit is named instead:
// the one that died, not the peer that noticed).
// Tests: tests/dist/test_launcher.cpp.
#pragma once
#include <string>
#include <vector>

namespace sk::dist {

struct LaunchOptions {
  int nproc = 1;
  std::vector<std::string> argv;  // the program and its arguments, the same for every rank
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double grace_seconds = 10;      // SIGTERM -> SIGKILL delay for the survivors of a failure
  // After a rank exits non-zero, how long to wait for a rank killed by a signal (the likelier
  // cause: its peers fail because it died), which is then reported instead.
  double settle_seconds = 1;
};

struct LaunchResult {
  int exit_code = 0;       // 0 when every rank exited 0
  int failed_rank = -1;    // the first rank seen to fail, or -1
  std::string message;     // "rank 1 (pid 1234) was killed by signal 9 (Killed)" or ""
};

LaunchResult launch(const LaunchOptions& o);

}  // namespace sk::dist
