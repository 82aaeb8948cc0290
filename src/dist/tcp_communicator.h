// The CPU collective backend: f32 collectives between processes over TCP (loopback on one
// machine, or any network), for multi-process training on the CPU and the CPU tests of data
// parallelism and ZeRO-1.
//
// Topology: a star through rank 0 over the connections the rendezvous (rendezvous.h) left open.
// Each collective: every rank > 0 sends rank 0 a header (op, sequence number, byte count) and its
// data; rank 0 reads them in rank order, sums in f64 in rank order (its own first), divides by
// the world size where a mean is asked, rounds to f32 once and sends each rank its result. So the
// result is bitwise the same on every rank and from run to run; simple and correct rather than
// fast (rank 0 moves world_size times the data).
//
// Watchdog: every read and write has a deadline of timeout_s. A peer that died (its connection
// closed: SIGKILL is seen at once) or stalled (nothing within timeout_s) fails the collective
// with an sk::Error naming that rank ("rank 1 closed its connection during all_reduce (the
// process died?)" / "rank 1 did not join all_reduce within 30 s"); rank 0 passes the error on to
// every other rank, which fails with it ("aborted: ..."). Mismatched collectives (ops, sizes or
// sequence numbers differ between ranks) are an error naming the rank.
// Tests: tests/dist/test_tcp_communicator.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/rendezvous.h"

namespace sk::dist {

class TcpCommunicator final : public Communicator {
 public:
  // Forms the world through the rendezvous at MASTER_ADDR:MASTER_PORT (timeout_s).
  TcpCommunicator(const World& w, double timeout_s);
  ~TcpCommunicator() override;

  int rank() const override { return world_.rank; }
  int world_size() const override { return world_.world_size; }
  std::string name() const override { return "tcp"; }
  Device device() const override { return Device::cpu(); }
  void all_reduce_mean(Tensor& buf) override;
  void reduce_scatter_mean(const Tensor& in, Tensor& out) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  double sum_scalar(double value) override;
  void barrier() override;

 private:
  enum Op : uint32_t { kAllReduce = 1, kReduceScatter = 2, kAllGather = 3, kSumScalar = 4, kBarrier = 5 };
  // One collective: `send` (bytes) from every rank; rank 0 combines them with `combine`
  // (inputs[r] = rank r's bytes) into one reply per rank; returns this rank's reply.
  std::string exchange(Op op, std::string send,
                       const std::function<std::vector<std::string>(const std::vector<std::string>&)>& combine);
  [[noreturn]] void fail(const std::string& message);

  World world_;
  double timeout_s_;
  Rendezvous rv_;
  uint64_t seq_ = 0;
  bool broken_ = false;
};

}  // namespace sk::dist
