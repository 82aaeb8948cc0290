// The Hopper (wgmma) main kernel of the attention backward, head dims 64 and 128
// (flash_backward_sm90.cu): called by flash_backward.cu between its prepare and finish-dQ
// launches. Internal to the kernels library (not part of the extern "C" interface in
// flash_attention.h).
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/attention/flash_attention.h"

namespace sk_flash {

// dK, dV and dq_accum (atomically added) for head dim 64 or 128 (at 128 only pipelined without
// key_split; anything else returns SK_KERNEL_BAD_ARG); key_split selects the dQ partition,
// pipelined the overlapped schedule (flash_backward_sm90.cu). delta and dq_accum come from the
// prepare kernel.
int launch_backward_main_sm90(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const float* lse,
                              const float* delta, void* dk, void* dv, float* dq_accum, bool key_split, bool pipelined,
                              cudaStream_t s);

}  // namespace sk_flash
