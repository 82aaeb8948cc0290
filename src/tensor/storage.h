// Storage: one allocation of raw bytes on a device, shared by every tensor view of it.
// CPU memory is 64-byte aligned; CUDA memory comes from the caching allocator
// (backend/cuda_allocator.h), so freeing a storage in the training step never calls cudaFree.
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace sk {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace sk
