// Collectives between the ranks of a data-parallel world, on flat 1-D buffers (contiguous
// tensors on the communicator's device). What the data-parallel gradient reducer
// (gradient_reducer.h) and ZeRO-1 (zero_optimizer.h) are written against.
//
// Implementations:
//   LocalCommunicator  world of one: all-reduce does nothing, reduce-scatter / all-gather copy.
//   TcpCommunicator    CPU worlds (dist/tcp_communicator.h): f32 over the rendezvous's TCP
//                      connections, a star through rank 0, sums in f64 in rank order
//                      (deterministic), a watchdog of timeout_s naming the rank that died or stalled.
//   NcclCommunicator   CUDA worlds in builds with NCCL (dist/nccl_reducer.h; compiled, not yet run on GPUs).
// Every rank must call the same collectives in the same order with the same sizes.
// Tests: tests/dist/test_tcp_communicator.cpp.
#pragma once
#include <memory>
#include <string>

#include "dist/world.h"
#include "tensor/tensor.h"

namespace sk::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // buf (n elements) becomes the element-wise mean over the ranks, in place.
  virtual void all_reduce_mean(Tensor& buf) = 0;
  // in: world_size * n elements; out: n elements = the mean over the ranks of
  // in[rank * n, (rank + 1) * n). `out` may be that very slice of `in` (in place, as NCCL allows).
  virtual void reduce_scatter_mean(const Tensor& in, Tensor& out) = 0;
  // in: n elements; out: world_size * n, rank r's `in` at [r * n, (r + 1) * n). `in` may be this
  // rank's slice of `out` (in place).
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  // The sum over the ranks (f64, added in rank order), and the mean.
  virtual double sum_scalar(double value) = 0;
  double mean_scalar(double value) { return sum_scalar(value) / double(world_size()); }
  // Waits for every rank (within the timeout; the error names the missing ranks).
  virtual void barrier() = 0;
};

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(Device d = Device::cpu()) : device_(d) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
  Device device() const override { return device_; }
  void all_reduce_mean(Tensor&) override {}
  void reduce_scatter_mean(const Tensor& in, Tensor& out) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  double sum_scalar(double value) override { return value; }
  void barrier() override {}

 private:
  Device device_;
};

// The communicator for `world` on `device`: LocalCommunicator for one process, TcpCommunicator
// for CPU devices, NcclCommunicator for CUDA devices (an error naming the rank and the environment
// in a build without NCCL). timeout_s: the rendezvous timeout and the collective watchdog.
std::unique_ptr<Communicator> make_communicator(const World& world, Device device, double timeout_s);

}  // namespace sk::dist
