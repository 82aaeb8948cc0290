// `sparsek info`: what this build has (CUDA or not) and the devices it sees.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/cuda_device.h"
#include "cli/commands.h"
#include "train/trainer.h"

namespace sk::cli {

void run_info() {
  {
    spdlog::info("sparsek build: CUDA backend {}", cuda::compiled() ? "compiled in" : "not compiled (CPU-only build)");
    const int n = cuda::device_count();
    spdlog::info("CUDA devices: {}", n);
    for (int i = 0; i < n; ++i) spdlog::info("  cuda:{}: {}", i, cuda::device_name(i));
    spdlog::info("training devices: {}", fmt::join(train::training_devices(), ", "));
  }
}

}  // namespace sk::cli
