// The CUDA backend as the rest of the code sees it: availability, memory, copies, sync.
//
// This header is CUDA-free so that every file can include it; in a CPU-only build (no
// SPARSEK_HAS_CUDA) is_available() is false and every other call throws sk::Error saying the
// build has no CUDA. Kernels and cuBLASLt handles are reached through backend/cuda_context.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sk::cuda {

bool compiled();      // built with the CUDA backend
bool is_available();  // compiled() and at least one device present
int device_count();
std::string device_name(int device);
int compute_capability(int device);  // major * 10 + minor, e.g. 90 for H100 / H200
void set_device(int device);
void synchronize();  // waits for the compute stream of the current device

// Raw device memory through the caching allocator (cudaMalloc only when the cache has no block).
void* raw_alloc(size_t nbytes, int device);
void raw_free(void* ptr, int device);

// Copies on the compute stream; copy_d2h waits for completion.
void copy_h2d(void* dst, const void* src, size_t nbytes);
void copy_d2h(void* dst, const void* src, size_t nbytes);
void copy_d2d(void* dst, const void* src, size_t nbytes);

struct MemoryStats {
  size_t allocated_bytes = 0;       // in tensors now
  size_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes
  size_t reserved_bytes = 0;        // taken from the driver (allocated + cached)
  size_t cuda_malloc_calls = 0;     // cudaMalloc calls so far (steady state: no new ones)
  size_t cache_hits = 0;            // allocations served from the cache
};
MemoryStats memory_stats(int device = 0);
void reset_peak_memory(int device = 0);
std::string memory_report(int device = 0);  // one line: allocated, peak, reserved, mallocs, hits
void empty_cache(int device = 0);           // returns cached blocks to the driver
// Testing aid: when on, every block handed out is first filled with 0xFF bytes (NaN in f32 and
// bf16), so an output element a kernel never writes shows up as NaN in parity tests.
void set_poison_on_alloc(bool on);

}  // namespace sk::cuda
