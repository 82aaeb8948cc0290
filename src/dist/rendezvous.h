// A small TCP rendezvous at MASTER_ADDR:MASTER_PORT that forms the world before NCCL starts:
// rank 0 listens; every other rank connects (retrying until the timeout) and says hello
// (rank, world size); rank 0 checks them (the same world size, no duplicate rank, rank in
// range) and, once all have arrived, sends each the blob (the 128-byte NCCL unique id; any
// bytes in the CPU tests). The connections stay open for barrier() and abort().
// Errors (sk::Error, the same text on rank 0 and, where it can be sent, on the rank concerned):
// the port already in use, a world size that differs from rank 0's, a duplicate rank, ranks that
// never arrived within the timeout (named), rank 0 unreachable within the timeout.
// Wire format: hello = magic "SKRV", rank, world (u32 each, host order: one machine type per
// job); reply = status (0 ok, 1 error), length, bytes (blob or error text); barrier: 'B' up,
// 'G' down; abort: 'A', length, message (to rank 0, which forwards it to everyone).
// Tests: tests/dist/test_rendezvous.cpp.
#pragma once
#include <string>
#include <vector>

#include "dist/world.h"

namespace sk::dist {

class Rendezvous {
 public:
  // Forms the world `w`; `blob` is rank 0's (ignored elsewhere). Blocks up to timeout_s.
  static Rendezvous form(const World& w, const std::string& blob, double timeout_s);
  Rendezvous(Rendezvous&& o) noexcept;
  Rendezvous& operator=(Rendezvous&&) = delete;
  ~Rendezvous();

  const std::string& blob() const { return blob_; }
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  // Waits until every rank has called barrier() (up to timeout_s: an error naming the ranks that
  // did not arrive). Throws the message of an abort() received instead.
  void barrier(double timeout_s);
  // Tells the others (through rank 0) to stop, e.g. from a watchdog; does not wait.
  void abort(const std::string& message);
  // Non-blocking check of the connections, for a watchdog waiting on collectives it cannot see
  // into (NCCL): returns "" while all is well, else what went wrong: on rank 0 "rank R closed its
  // connection (the process died)" (the others are then told through abort()) or "rank R aborted:
  // ..."; on other ranks "rank 0 closed its connection ..." or "aborted: ...". Barrier bytes in
  // flight are left unread.
  std::string poll_peers();
  // The open connection to rank `r` (rank 0: any other rank; other ranks: r = 0 only), for a
  // collective backend that reuses it (tcp_communicator.h); -1 when there is none.
  int peer_fd(int r) const {
    if (rank_ == 0) return r > 0 && r < int(peers_.size()) ? peers_[size_t(r)] : -1;
    return r == 0 && !peers_.empty() ? peers_[0] : -1;
  }

 private:
  Rendezvous() = default;
  int rank_ = 0, world_ = 1;
  std::string blob_;
  int listen_fd_ = -1;
  std::vector<int> peers_;  // rank 0: fd per rank (index 0 unused); others: [fd of rank 0]
};

}  // namespace sk::dist
