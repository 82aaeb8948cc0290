// The NCCL communicator (nccl_reducer.h). Host code only; the collectives go through NCCL.
#include "dist/nccl_reducer.h"

#include "util/check.h"

#ifdef SPARSEK_HAS_NCCL
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "autograd/node.h"
#include "backend/cuda_context.h"
#include "dist/rendezvous.h"
#endif

namespace sk::dist {

#ifdef SPARSEK_HAS_NCCL
namespace {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const World& w, Device device, double timeout_s)
      : world_(w), device_(device), timeout_s_(timeout_s),
        rv_(Rendezvous::form(w, w.rank == 0 ? new_unique_id() : std::string(), timeout_s)) {
    SK_CHECK(rv_.blob().size() == sizeof(ncclUniqueId), "rendezvous: the NCCL id from rank 0 has ", rv_.blob().size(),
             " bytes, expected ", sizeof(ncclUniqueId));
    ncclUniqueId id;
    std::memcpy(&id, rv_.blob().data(), sizeof id);
    cuda::set_device(device.index);
    check(ncclCommInitRank(&comm_, w.world_size, id, w.rank), "ncclCommInitRank");
    SK_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (done_) cudaEventDestroy(done_);
  }

  int rank() const override { return world_.rank; }
  int world_size() const override { return world_.world_size; }
  std::string name() const override { return "nccl"; }
  Device device() const override { return device_; }

  void all_reduce_mean(Tensor& buf) override {
    check_buffer(buf, "all-reduce buffer");
    cuda::set_device(device_.index);
    check(ncclAllReduce(buf.data_ptr(), buf.data_ptr(), size_t(buf.numel()), nccl_type(buf), ncclAvg, comm_,
                        cuda::stream()),
          "ncclAllReduce");
    wait("gradient all-reduce");
  }

  void reduce_scatter_mean(const Tensor& in, Tensor& out) override {
    check_buffer(in, "reduce-scatter input");
    check_buffer(out, "reduce-scatter output");
    SK_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * world_.world_size, "reduce_scatter: input ",
             in.str(), ", output ", out.str(), " in a world of ", world_.world_size);
    cuda::set_device(device_.index);
    check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(in), ncclAvg, comm_,
                            cuda::stream()),
          "ncclReduceScatter");
    wait("gradient reduce-scatter");
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    check_buffer(in, "all-gather input");
    check_buffer(out, "all-gather output");
    SK_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * world_.world_size, "all_gather: input ",
             in.str(), ", output ", out.str(), " in a world of ", world_.world_size);
    cuda::set_device(device_.index);
    check(ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.numel()), nccl_type(in), comm_, cuda::stream()),
          "ncclAllGather");
    wait("parameter all-gather");
  }

  double sum_scalar(double value) override {
    cuda::set_device(device_.index);
    // Two f32 halves (value ~ hi + lo, hi = f32(value), lo = f32(value - hi)): about 48 bits of the
    // value survive, enough for a loss or a sum of squares, without f64 device tensors.
    const float hi = float(value);
    const float lo = float(value - double(hi));
    Tensor pair = Tensor::from_vector({double(hi), double(lo)}, {2}, DType::F32, device_);
    check(ncclAllReduce(pair.data_ptr(), pair.data_ptr(), 2, ncclFloat32, ncclSum, comm_, cuda::stream()),
          "ncclAllReduce");
    wait("scalar all-reduce");
    const std::vector<double> v = pair.to_vector();
    return v[0] + v[1];
  }

  void barrier() override { rv_.barrier(timeout_s_); }

 private:
  static std::string new_unique_id() {
    ncclUniqueId id;
    const ncclResult_t r = ncclGetUniqueId(&id);
    SK_CHECK(r == ncclSuccess, "ncclGetUniqueId: ", ncclGetErrorString(r));
    return std::string(reinterpret_cast<const char*>(&id), sizeof id);
  }

  void check_buffer(const Tensor& t, const char* what) const {
    SK_CHECK(t.defined() && t.device() == device_ && t.is_contiguous() &&
                 (t.dtype() == DType::F32 || t.dtype() == DType::BF16),
             "nccl communicator: the ", what, " must be a contiguous f32/bf16 tensor on ", device_.str(), ", got ",
             t.defined() ? t.str() : std::string("undefined"));
  }
  static ncclDataType_t nccl_type(const Tensor& t) { return t.dtype() == DType::BF16 ? ncclBfloat16 : ncclFloat32; }

  void check(ncclResult_t r, const char* what) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    SK_FAIL("rank ", world_.rank, ": ", what, " failed: ", ncclGetErrorString(r), " (", ncclGetLastError(comm_), ")");
  }

  // The watchdog: wait for the collectives issued so far, at most timeout_s.
  void wait(const char* what) {
    SK_CUDA_CHECK(cudaEventRecord(done_, cuda::stream()));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(timeout_s_ * 1000));
    while (true) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) return;
      SK_CHECK(q == cudaErrorNotReady, "rank ", world_.rank, ": CUDA error while waiting for the ", what, ": ",
               cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      const bool late = std::chrono::steady_clock::now() > deadline;
      // A peer's death shows on the rendezvous connections at once (its socket closes): no need
      // to wait for the timeout. Checked every ~10 ms.
      std::string peer = ++polls_ % 50 == 0 ? rv_.poll_peers() : std::string();
      if (async != ncclSuccess || late || !peer.empty()) {
        const std::string msg = "rank " + std::to_string(world_.rank) + ": the " + what +
                                (!peer.empty() ? " cannot complete: " + peer
                                 : late ? " did not complete within " + std::to_string(int(timeout_s_)) +
                                              " s (dist.timeout_s; a peer stopped answering)"
                                        : std::string(" failed: ") + ncclGetErrorString(async));
        rv_.abort(msg);
        ncclCommAbort(comm_);
        comm_ = nullptr;
        SK_FAIL(msg);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  World world_;
  Device device_;
  double timeout_s_;
  Rendezvous rv_;
  ncclComm_t comm_ = nullptr;
  cudaEvent_t done_ = nullptr;
  uint64_t polls_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const World& w, Device device, double timeout_s) {
  SK_CHECK(device.is_cuda(), "data parallel with NCCL needs CUDA devices; train.device resolved to ", device.str(),
           " on rank ", w.rank);
  return std::make_unique<NcclCommunicator>(w, device, timeout_s);
}
#else
std::unique_ptr<Communicator> make_nccl_communicator(const World& w, Device device, double) {
  SK_FAIL("this build has no NCCL (a CUDA build finds it in the CUDA toolkit); cannot train on ", device.str(),
          " in a world of ", w.world_size, " processes (rank ", w.rank, ", from the ", w.source,
          " environment); train.device=cpu trains over TCP");
}
#endif

}  // namespace sk::dist
