// device_runs_sm90a (sm90_device.h): whether the current device runs the kernels' sm_90a code.
#include "kernels/attention/sm90_device.h"

#include <cuda_runtime.h>

namespace sk_flash {

bool device_runs_sm90a() {
  static int known[64] = {};  // per device: 0 not asked yet, 1 yes, 2 no
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev >= 0 && dev < 64 && known[dev]) return known[dev] == 1;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return false;
  const bool yes = major == 9 && minor == 0;
  if (dev >= 0 && dev < 64) known[dev] = yes ? 1 : 2;
  return yes;
}

}  // namespace sk_flash
