// Test utilities for CUDA-vs-CPU parity.
//
// compare(got, ref) reports the max absolute error, the max relative error (|got - ref| / (|ref|
// + floor)), the relative L2 error ||got - ref|| / ||ref||, and whether any value is NaN/Inf
// (an output element the kernel never wrote shows up as NaN: parity tests run with the CUDA
// allocator's poisoning on, which fills every new block with NaN bytes).
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "backend/cuda_device.h"
#include "tensor/tensor.h"

namespace sk::testing {

struct ParityReport {
  double max_abs = 0, max_rel = 0, rel_l2 = 0;
  bool non_finite = false;
  int64_t worst_index = -1;
  std::string str() const;
};

ParityReport compare(const Tensor& got, const Tensor& ref, double rel_floor = 1e-3);

// CUDA allocations filled with NaN bytes while in scope (an output a kernel never writes shows up
// as non-finite); restored on exit, also when an ASSERT returns early.
struct PoisonAllocsGuard {
  PoisonAllocsGuard() { ::sk::cuda::set_poison_on_alloc(true); }
  ~PoisonAllocsGuard() { ::sk::cuda::set_poison_on_alloc(false); }
  PoisonAllocsGuard(const PoisonAllocsGuard&) = delete;
  PoisonAllocsGuard& operator=(const PoisonAllocsGuard&) = delete;
};

// Skips the current test (GTEST_SKIP) when there is no CUDA device, saying why.
#define SK_REQUIRE_CUDA()                                                                 \
  do {                                                                                    \
    if (!::sk::cuda::is_available())                                                      \
      GTEST_SKIP() << (::sk::cuda::compiled() ? "no CUDA device present: GPU test skipped" \
                                               : "CPU-only build: GPU test skipped");     \
  } while (0)

}  // namespace sk::testing
