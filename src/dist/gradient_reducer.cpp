// The gradient reducer for a world (gradient_reducer.h).
#include "dist/gradient_reducer.h"

#include "dist/nccl_reducer.h"

namespace sk::dist {

std::unique_ptr<GradientReducer> make_gradient_reducer(const World& world, Device device, const std::string& reduce_dtype,
                                                       double bucket_mb, double timeout_s) {
  if (!world.distributed()) return std::make_unique<LocalReducer>();
  NcclReducerOptions o;
  o.reduce_dtype = reduce_dtype;
  o.bucket_mb = bucket_mb;
  o.timeout_s = o.rendezvous_timeout_s = timeout_s;
  return make_nccl_reducer(world, device, o);
}

}  // namespace sk::dist
