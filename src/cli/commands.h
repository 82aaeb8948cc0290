// The subcommands of build/sparsek. Options are plain structs filled by the CLI11 parser in
// src/cli/main.cpp (the only file that includes CLI11); each run_* lives in src/cli/<name>.cpp.
#pragma once
#include <cstdint>
#include <string>

namespace sk::cli {

struct DemoOptions {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  int steps = 300;
  int batch = 64;               // positions per step
  int vocab = 64;
  int channels = 64;
  uint64_t seed = 1234;
};
void run_demo(const DemoOptions& o);

void run_info();

struct BenchOpsOptions {
  std::string out = "bench_ops.json";
  int iters = 50;   // timed runs per case (median reported)
  int warmup = 3;
};
void run_bench_ops(const BenchOpsOptions& o);

}  // namespace sk::cli
