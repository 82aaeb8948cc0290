// The NCCL gradient reducer (world size > 1, CUDA + NCCL builds only: SPARSEK_HAS_NCCL).
// Forms the world through the TCP rendezvous (rank 0's ncclUniqueId is the blob), then
// ncclCommInitRank on this rank's GPU. reduce(): the gradients, in parameter order, are packed
// into buckets of up to `bucket_mb` (fp32, or bf16 when reduce_dtype is bf16), each bucket
// all-reduced with ncclAvg and unpacked, after backward (no per-parameter ready hook in autograd:
// not overlapped with backward), on the compute stream. Watchdog: the host waits for the step's
// collectives with a deadline; past `timeout_s` (or on an NCCL async error) the communicator is
// aborted (ncclCommAbort), the other ranks are told through the rendezvous, and an sk::Error names
// this rank and the peers that did not answer as far as known.
// NOT RUN YET: compiled here, to be run on a 2-GPU machine (docs/DISTRIBUTED.md).
#pragma once
#include <memory>
#include <string>

#include "dist/gradient_reducer.h"
#include "tensor/device.h"

namespace sk::dist {

struct NcclReducerOptions {
  std::string reduce_dtype = "f32";  // f32 | bf16
  double bucket_mb = 25;
  double timeout_s = 300;            // collective watchdog
  double rendezvous_timeout_s = 300;
};

// Throws when this build has no NCCL (naming the build option).
std::unique_ptr<GradientReducer> make_nccl_reducer(const World& w, Device device, const NcclReducerOptions& o);

}  // namespace sk::dist
