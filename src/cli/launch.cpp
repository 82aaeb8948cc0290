// `sparsek launch --nproc N CONFIG [--set k=v ...]`: N local ranks of `sparsek train CONFIG`
// (this same binary) with the torchrun variables set (src/dist/launcher.h). Exits 0 when every
// rank succeeded, else with the first failing rank's status after naming it.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "dist/launcher.h"
#include "util/check.h"

namespace sk::cli {

void run_launch(const LaunchCliOptions& o) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  SK_CHECK(!ec, "launch: cannot find this program's path (/proc/self/exe): ", ec.message());
  dist::LaunchOptions lo;
  lo.nproc = o.nproc;
  lo.master_addr = o.master_addr;
  lo.master_port = o.master_port;
  lo.argv = {self.string(), "train", o.config};
  for (const std::string& s : o.overrides) {
    lo.argv.push_back("--set");
    lo.argv.push_back(s);
  }
  spdlog::info("launch: {} rank(s) of {} train {} (MASTER_ADDR={} MASTER_PORT={}, NCCL_NVLS_ENABLE=0)", o.nproc,
               self.string(), o.config, o.master_addr, o.master_port);
  const dist::LaunchResult r = dist::launch(lo);
  if (r.exit_code != 0) {
    spdlog::error("launch: {}", r.message);
    std::exit(r.exit_code);
  }
}

}  // namespace sk::cli
