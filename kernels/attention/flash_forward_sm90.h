// The Hopper (wgmma) forward kernel of the fused attention, head dims 64 and 128
// (flash_forward_sm90.cu): called by sk_cuda_flash_forward (flash_forward.cu) when
// SkFlashParams::forward_kernel asks for it. Internal to the kernels library.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/attention/flash_attention.h"

namespace sk_flash {

// out and lse as sk_cuda_flash_forward writes them; head dim 64 or 128, compute capability 9.0.
int launch_forward_sm90(const SkFlashParams& p, void* out, float* lse, cudaStream_t s);

}  // namespace sk_flash
