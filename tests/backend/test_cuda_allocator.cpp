// The CUDA caching allocator (src/backend/cuda_allocator.h), observed only through the CUDA-free
// API of backend/cuda_device.h (memory_stats, memory_report, empty_cache, raw_alloc/raw_free):
// the allocator header itself is CUDA-only, so round_size and the free lists are not reachable
// from here.
//   CudaAllocator.*  freed blocks are reused (cache hits, no new cudaMalloc), allocated/peak/
//                    reserved bookkeeping, empty_cache, poisoning, out-of-memory errors. They need
//                    a GPU and skip without one (SK_REQUIRE_CUDA). ctest runs each test in its own
//                    process, so the allocator starts empty; the checks use deltas all the same.
//   CudaBackend.cpu_only_build_reports_no_device  runs everywhere: without a usable device
//                    (CPU-only build, or no GPU) creating a CUDA tensor throws an sk::Error that
//                    says so; with one it succeeds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>

#include "backend/cuda_device.h"
#include "tensor/tensor.h"
#include "testing/parity.h"
#include "util/check.h"

namespace {

using sk::Device;
using sk::DType;
using sk::Tensor;
namespace cuda = sk::cuda;

constexpr size_t kMiB = size_t(1) << 20;

// Size of an f32 tensor of `bytes` bytes.
Tensor cuda_f32(size_t bytes) { return Tensor::empty({static_cast<int64_t>(bytes / 4)}, DType::F32, Device::cuda(0)); }

TEST(CudaAllocator, freed_block_is_reused) {
  SK_REQUIRE_CUDA();
  const size_t bytes = 6 * kMiB;
  { Tensor t = cuda_f32(bytes); }  // allocate and free: the block goes to the cache
  const cuda::MemoryStats s1 = cuda::memory_stats();
  { Tensor t = cuda_f32(bytes); }  // same size again
  const cuda::MemoryStats s2 = cuda::memory_stats();
  std::cout << "[allocator] " << cuda::memory_report() << std::endl;
  EXPECT_EQ(s2.cuda_malloc_calls, s1.cuda_malloc_calls) << "a freed block of the same size was not reused";
  EXPECT_EQ(s2.cache_hits, s1.cache_hits + 1);
  EXPECT_EQ(s2.reserved_bytes, s1.reserved_bytes);
}

TEST(CudaAllocator, same_pointer_back_for_same_size) {
  SK_REQUIRE_CUDA();
  const size_t bytes = 123456789;  // an odd size no other allocation in this process shares
  void* p = cuda::raw_alloc(bytes, 0);
  ASSERT_NE(p, nullptr);
  cuda::raw_free(p, 0);
  void* q = cuda::raw_alloc(bytes, 0);
  EXPECT_EQ(q, p) << "the cached block was not handed out again";
  cuda::raw_free(q, 0);
}

TEST(CudaAllocator, smaller_request_reuses_a_close_block_only) {
  SK_REQUIRE_CUDA();
  // A freed 64 MiB block serves a 60 MiB request (waste under a quarter of the block) but not a
  // 16 MiB one (that would waste three quarters).
  { Tensor t = cuda_f32(64 * kMiB); }
  const cuda::MemoryStats s0 = cuda::memory_stats();
  { Tensor t = cuda_f32(60 * kMiB); }
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_EQ(s1.cuda_malloc_calls, s0.cuda_malloc_calls) << "60 MiB did not reuse the cached 64 MiB block";
  EXPECT_EQ(s1.cache_hits, s0.cache_hits + 1);
  {
    Tensor big = cuda_f32(64 * kMiB);   // takes the cached block
    Tensor small = cuda_f32(16 * kMiB);  // nothing suitable cached: a new block
    const cuda::MemoryStats s2 = cuda::memory_stats();
    EXPECT_EQ(s2.cuda_malloc_calls, s1.cuda_malloc_calls + 1) << "16 MiB must not take a 64 MiB block";
    EXPECT_GE(s2.allocated_bytes, s1.allocated_bytes + 80 * kMiB);
  }
}

TEST(CudaAllocator, allocated_bytes_follow_live_tensors) {
  SK_REQUIRE_CUDA();
  const cuda::MemoryStats s0 = cuda::memory_stats();
  {
    Tensor a = cuda_f32(8 * kMiB);
    const cuda::MemoryStats s1 = cuda::memory_stats();
    EXPECT_GE(s1.allocated_bytes, s0.allocated_bytes + 8 * kMiB);
    EXPECT_LE(s1.allocated_bytes, s0.allocated_bytes + 8 * kMiB + 8 * kMiB / 4) << "more than the rounding slack";
    EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes);
  }
  const cuda::MemoryStats s2 = cuda::memory_stats();
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes) << "freeing the tensor did not return its bytes";
  EXPECT_GE(s2.reserved_bytes, s2.allocated_bytes) << "the freed block should stay reserved (cached)";
}

TEST(CudaAllocator, peak_tracking) {
  SK_REQUIRE_CUDA();
  cuda::reset_peak_memory();
  const cuda::MemoryStats s0 = cuda::memory_stats();
  EXPECT_EQ(s0.peak_allocated_bytes, s0.allocated_bytes) << "reset_peak_memory sets the peak to the current value";
  {
    Tensor a = cuda_f32(32 * kMiB);
    Tensor b = cuda_f32(16 * kMiB);
  }
  { Tensor c = cuda_f32(4 * kMiB); }
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes);
  EXPECT_GE(s1.peak_allocated_bytes, s0.allocated_bytes + 48 * kMiB) << "peak missed the 48 MiB high-water mark";
  EXPECT_LE(s1.peak_allocated_bytes, s0.allocated_bytes + 48 * kMiB + 12 * kMiB) << "peak counts more than was live";
  cuda::reset_peak_memory();
  EXPECT_EQ(cuda::memory_stats().peak_allocated_bytes, s1.allocated_bytes);
}

TEST(CudaAllocator, empty_cache_releases_cached_blocks) {
  SK_REQUIRE_CUDA();
  Tensor keep = cuda_f32(2 * kMiB);
  { Tensor t = cuda_f32(10 * kMiB); }
  const cuda::MemoryStats s0 = cuda::memory_stats();
  EXPECT_GT(s0.reserved_bytes, s0.allocated_bytes) << "the freed 10 MiB should be cached";
  cuda::empty_cache();
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_EQ(s1.reserved_bytes, s1.allocated_bytes) << "after empty_cache only live blocks stay reserved";
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes) << "empty_cache must not touch live tensors";
  { Tensor t = cuda_f32(10 * kMiB); }
  EXPECT_EQ(cuda::memory_stats().cuda_malloc_calls, s1.cuda_malloc_calls + 1) << "the cache was empty: a new cudaMalloc";
  // The live tensor is intact.
  keep.fill_(2.5);
  EXPECT_EQ(keep.to_vector().back(), 2.5);
}

TEST(CudaAllocator, memory_report_mentions_allocated_peak_reserved) {
  SK_REQUIRE_CUDA();
  Tensor t = cuda_f32(kMiB);
  const std::string report = cuda::memory_report();
  std::cout << "[allocator] " << report << std::endl;
  for (const char* word : {"allocated", "peak", "reserved"})
    EXPECT_NE(report.find(word), std::string::npos) << "memory_report() does not mention '" << word << "': " << report;
}

TEST(CudaAllocator, zero_sized_tensor) {
  SK_REQUIRE_CUDA();
  Tensor t = Tensor::empty({0, 768}, DType::BF16, Device::cuda(0));
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.to(Device::cpu()).numel(), 0);
}

TEST(CudaAllocator, poison_on_alloc_fills_nan) {
  SK_REQUIRE_CUDA();
  cuda::set_poison_on_alloc(true);
  const Tensor f = Tensor::empty({1000}, DType::F32, Device::cuda(0));
  const Tensor b = Tensor::empty({1000}, DType::BF16, Device::cuda(0));
  cuda::set_poison_on_alloc(false);
  for (const Tensor& t : {f, b}) {
    int64_t finite = 0;
    for (double v : t.to_vector()) finite += std::isfinite(v);
    EXPECT_EQ(finite, 0) << sk::dtype_name(t.dtype()) << ": poisoned block has finite values";
  }
}

TEST(CudaAllocator, out_of_memory_throws_sk_error) {
  SK_REQUIRE_CUDA();
  const int64_t n = int64_t(1) << 40;  // 4 TiB of f32
  try {
    Tensor t = Tensor::empty({n}, DType::F32, Device::cuda(0));
    ADD_FAILURE() << "allocating 4 TiB succeeded";
  } catch (const sk::Error& e) {
    const std::string msg = e.what();
    std::cout << "[allocator] 4 TiB request: " << msg << std::endl;
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("allocated"), std::string::npos) << msg;
  }
  // Still usable afterwards.
  Tensor t = Tensor::full({4}, 1.5, DType::F32, Device::cuda(0));
  EXPECT_EQ(t.to_vector()[3], 1.5);
}

// Runs everywhere (no skip): a CPU-only build, a CUDA build without a GPU and a GPU machine each
// check what they can.
TEST(CudaBackend, cpu_only_build_reports_no_device) {
  auto expect_cuda_error = [](const std::string& must_mention) {
    try {
      Tensor t = Tensor::empty({4}, DType::F32, Device::cuda(0));
      ADD_FAILURE() << "creating a CUDA tensor without a usable device did not throw";
    } catch (const sk::Error& e) {
      const std::string msg = e.what();
      std::cout << "[backend] Tensor::empty on cuda:0: " << msg << std::endl;
      EXPECT_NE(msg.find("CUDA"), std::string::npos) << "the message does not mention CUDA: " << msg;
      EXPECT_NE(msg.find(must_mention), std::string::npos) << msg;
    }
  };
  if (!cuda::compiled()) {
    EXPECT_FALSE(cuda::is_available());
    EXPECT_EQ(cuda::device_count(), 0);
    expect_cuda_error("no CUDA");
    // Moving a CPU tensor there fails the same way.
    EXPECT_THROW(Tensor::zeros({2}).to(Device::cuda(0)), sk::Error);
    // Memory queries answer without throwing.
    EXPECT_EQ(cuda::memory_stats().cuda_malloc_calls, 0u);
    EXPECT_NE(cuda::memory_report().find("no CUDA"), std::string::npos) << cuda::memory_report();
  } else if (!cuda::is_available()) {
    EXPECT_EQ(cuda::device_count(), 0);
    expect_cuda_error("no CUDA device");
  } else {
    Tensor t;
    EXPECT_NO_THROW(t = Tensor::full({4}, 3.0, DType::F32, Device::cuda(0)));
    EXPECT_EQ(t.to_vector()[0], 3.0);
  }
}

}  // namespace
