// The local communicator and the choice of backend (communicator.h).
#include "dist/communicator.h"

#include "autograd/node.h"
#include "dist/nccl_reducer.h"
#include "dist/tcp_communicator.h"
#include "util/check.h"

namespace sk::dist {

void LocalCommunicator::reduce_scatter_mean(const Tensor& in, Tensor& out) {
  SK_CHECK(in.numel() == out.numel(), "reduce_scatter: input of ", in.numel(), " elements for an output of ",
           out.numel(), " in a world of 1");
  autograd::NoGradGuard no_grad;
  if (in.data_ptr() != out.data_ptr()) out.copy_(in);
}

void LocalCommunicator::all_gather(const Tensor& in, Tensor& out) {
  SK_CHECK(in.numel() == out.numel(), "all_gather: output of ", out.numel(), " elements for an input of ", in.numel(),
           " in a world of 1");
  autograd::NoGradGuard no_grad;
  if (in.data_ptr() != out.data_ptr()) out.copy_(in);
}

std::unique_ptr<Communicator> make_communicator(const World& world, Device device, double timeout_s) {
  if (!world.distributed()) return std::make_unique<LocalCommunicator>(device);
  if (device.is_cpu()) return std::make_unique<TcpCommunicator>(world, timeout_s);
  return make_nccl_communicator(world, device, timeout_s);
}

}  // namespace sk::dist
