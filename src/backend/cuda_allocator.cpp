// CudaCachingAllocator (see cuda_allocator.h).
#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_allocator.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "backend/cuda_context.h"
#include "util/check.h"

namespace sk::cuda {

size_t CudaCachingAllocator::round_size(size_t nbytes) {
  constexpr size_t kSmall = 512, kLarge = 2u << 20, kSmallLimit = 1u << 20;
  if (nbytes == 0) nbytes = 1;
  if (nbytes < kSmallLimit) return (nbytes + kSmall - 1) / kSmall * kSmall;
  return (nbytes + kLarge - 1) / kLarge * kLarge;
}

void* CudaCachingAllocator::allocate(size_t nbytes) {
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_blocks_.lower_bound(size);
  void* ptr = nullptr;
  size_t got = size;
  if (it != free_blocks_.end() && it->first <= size + size / 4) {
    ptr = it->second;
    got = it->first;
    free_blocks_.erase(it);
    stats_.cache_hits++;
  } else {
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      // Give every cached block back and try once more.
      for (auto& [sz, p] : free_blocks_) {
        cudaFree(p);
        stats_.reserved_bytes -= sz;
      }
      free_blocks_.clear();
      err = cudaMalloc(&ptr, size);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      SK_FAIL("CUDA out of memory on device ", device_, " allocating ", nbytes, " bytes (",
              cudaGetErrorString(err), "); allocated ", stats_.allocated_bytes, " bytes, reserved ",
              stats_.reserved_bytes, " bytes");
    }
    stats_.cuda_malloc_calls++;
    stats_.reserved_bytes += size;
  }
  in_use_[ptr] = got;
  stats_.allocated_bytes += got;
  if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
  return ptr;
}

void CudaCachingAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(ptr);
  SK_CHECK(it != in_use_.end(), "CudaCachingAllocator::release: pointer ", ptr, " was not allocated here");
  stats_.allocated_bytes -= it->second;
  free_blocks_.emplace(it->second, ptr);
  in_use_.erase(it);
}

void CudaCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  cudaDeviceSynchronize();
  for (auto& [sz, p] : free_blocks_) {
    cudaFree(p);
    stats_.reserved_bytes -= sz;
  }
  free_blocks_.clear();
}

MemoryStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CudaCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
}

CudaCachingAllocator& allocator_for(int device) {
  // Never destroyed: tensors still alive in other statics at exit release into them.
  static std::mutex& mu = *new std::mutex;
  static auto& allocators = *new std::vector<std::unique_ptr<CudaCachingAllocator>>;
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<int>(allocators.size()) <= device) allocators.resize(device + 1);
  if (!allocators[device]) allocators[device] = std::make_unique<CudaCachingAllocator>(device);
  return *allocators[device];
}

}  // namespace sk::cuda
#endif
