// CudaCachingAllocator: keeps freed device blocks and hands them out again, so the steady-state
// training step makes no cudaMalloc/cudaFree calls. Sizes are rounded (512 B below 1 MiB, 2 MiB
// above) and a cached block is reused for a request when it wastes at most a quarter of itself.
// All work runs on one compute stream per device, so a block freed by the host can be reused at
// once: later kernels are ordered after earlier ones on that stream.
// On out-of-memory the cache is emptied and the allocation retried once; then sk::Error with the
// memory report. Tested by tests/backend/test_cuda_allocator.cpp.
#pragma once
#ifdef SPARSEK_HAS_CUDA
#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>

#include "backend/cuda_device.h"

namespace sk::cuda {

class CudaCachingAllocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}
  ~CudaCachingAllocator() = default;  // blocks live until process exit (the driver frees them)
  void* allocate(size_t nbytes);
  void release(void* ptr);
  void empty_cache();
  MemoryStats stats() const;
  void reset_peak();
  static size_t round_size(size_t nbytes);

 private:
  int device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;   // size -> block
  std::unordered_map<void*, size_t> in_use_;   // block -> size
  MemoryStats stats_;
};

CudaCachingAllocator& allocator_for(int device);

}  // namespace sk::cuda
#endif
