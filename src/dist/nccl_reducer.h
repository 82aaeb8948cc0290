// The NCCL communicator (world size > 1, CUDA + NCCL builds only: SPARSEK_HAS_NCCL), the CUDA
// implementation of dist::Communicator (communicator.h) behind the bucketed gradient reducer
// (gradient_reducer.h) and ZeRO-1 (zero_optimizer.h).
// Forms the world through the TCP rendezvous (rank 0's ncclUniqueId is the blob), then
// ncclCommInitRank on this rank's GPU. Collectives on the compute stream: all-reduce (ncclAvg,
// f32 or bf16), reduce-scatter (ncclReduceScatter, ncclAvg), all-gather (ncclAllGather), a f64
// sum for scalars; barrier = the rendezvous barrier. Watchdog: after each collective the host
// waits for it with a deadline; past `timeout_s` (or on an NCCL async error) the communicator is
// aborted (ncclCommAbort), the other ranks are told through the rendezvous, and an sk::Error names
// this rank (the launcher names the rank that died).
// NOT RUN YET: compiled here, to be run on a 2-GPU machine (docs/DISTRIBUTED.md).
#pragma once
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "tensor/device.h"

namespace sk::dist {

// Throws when this build has no NCCL (naming the build option) or `device` is not CUDA.
std::unique_ptr<Communicator> make_nccl_communicator(const World& w, Device device, double timeout_s);

}  // namespace sk::dist
