// `sparsek bench ops` (src/cli/bench_ops.cpp).
#pragma once
#include <CLI/CLI.hpp>

namespace sk::cli {
void register_bench_ops(CLI::App& bench);
}
