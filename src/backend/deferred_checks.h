// Deferred device error checks: kernels that meet bad input (an embedding index or a
// cross-entropy target out of range) raise a device flag instead of making the host wait after
// every launch. The op registers the flag here with a `report` function that throws the sk::Error
// describing the problem; every flag is read at the next point where the host waits for the
// device anyway (cuda::synchronize, and every device-to-host copy: Tensor::item, to(cpu), ...),
// so the error surfaces there, at the latest with the step's loss read-back. A step thus makes
// no extra host syncs for input validation. Tested by tests/cuda/test_cuda_bad_input.cpp.
#pragma once
#include <functional>
#include <memory>

namespace sk::cuda {

// device_flag: a device int32 (0 = fine) on `device`; owner keeps its memory alive until checked.
void defer_error_check(const int* device_flag, int device, std::shared_ptr<void> owner, std::function<void()> report);
// Reads all pending flags (waits for the device) and calls the report of the first one set, which
// throws. The pending list is cleared first, so a report may itself read from the device.
void check_deferred_errors();
// Number of flags not yet read (tests).
size_t pending_error_checks();

}  // namespace sk::cuda
