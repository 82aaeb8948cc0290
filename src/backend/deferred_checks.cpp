// Deferred device error checks (deferred_checks.h).
#include "backend/deferred_checks.h"

#include <mutex>
#include <vector>

#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda_context.h"
#endif

namespace sk::cuda {

namespace {
struct PendingCheck {
  const int* flag;
  int device;
  std::shared_ptr<void> owner;
  std::function<void()> report;
};
// Never destroyed: entries own device memory whose release at process exit would run after the
// caching allocator's statics are gone.
std::mutex& g_mu = *new std::mutex;
std::vector<PendingCheck>& g_pending = *new std::vector<PendingCheck>;
// A step syncs at least once (the loss read-back); a loop that never does still gets its flags
// read every this many registrations, so the list stays bounded.
constexpr size_t kMaxPending = 256;
}  // namespace

void defer_error_check(const int* device_flag, int device, std::shared_ptr<void> owner, std::function<void()> report) {
  size_t n;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_pending.push_back({device_flag, device, std::move(owner), std::move(report)});
    n = g_pending.size();
  }
  if (n >= kMaxPending) check_deferred_errors();
}

size_t pending_error_checks() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_pending.size();
}

void check_deferred_errors() {
  std::vector<PendingCheck> pending;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_pending.empty()) return;
    pending.swap(g_pending);
  }
#ifdef SPARSEK_HAS_CUDA
  for (const PendingCheck& c : pending) {
    int value = 0;
    set_device(c.device);
    SK_CUDA_CHECK(cudaMemcpyAsync(&value, c.flag, sizeof(int), cudaMemcpyDeviceToHost, stream()));
    SK_CUDA_CHECK(cudaStreamSynchronize(stream()));
    if (value != 0) {
      c.report();  // throws
      SK_FAIL("a device error flag was set but its report did not throw");
    }
  }
#endif
}

}  // namespace sk::cuda
