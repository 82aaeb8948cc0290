// Which devices run the Hopper-only (wgmma, sm_90a) attention kernels: the launchers
// (flash_forward.cu, flash_backward.cu) ask before choosing flash_*_sm90.cu.
#pragma once

namespace sk_flash {

// True when the current device is compute capability 9.0 (it runs the sm_90a machine code the
// build embeds; other devices would JIT the compute_90 PTX, which has no wgmma). Cached per device.
bool device_runs_sm90a();

}  // namespace sk_flash
