// The NCCL gradient reducer (nccl_reducer.h). Host code only; packing and unpacking go through
// Tensor::copy_ (the existing conversion kernels), the collectives through NCCL.
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

class NcclReducer final : public GradientReducer {
 public:
  NcclReducer(const World& w, Device device, const NcclReducerOptions& o)
      : world_(w), device_(device), opt_(o),
        rv_(Rendezvous::form(w, w.rank == 0 ? new_unique_id() : std::string(), o.rendezvous_timeout_s)) {
    SK_CHECK(o.reduce_dtype == "f32" || o.reduce_dtype == "bf16", "dist reduce dtype '", o.reduce_dtype,
             "' is not one of: f32, bf16");
    SK_CHECK(rv_.blob().size() == sizeof(ncclUniqueId), "rendezvous: the NCCL id from rank 0 has ", rv_.blob().size(),
             " bytes, expected ", sizeof(ncclUniqueId));
    ncclUniqueId id;
    std::memcpy(&id, rv_.blob().data(), sizeof id);
    cuda::set_device(device.index);
    check(ncclCommInitRank(&comm_, w.world_size, id, w.rank), "ncclCommInitRank");
    SK_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclReducer() override {
    if (comm_) ncclCommDestroy(comm_);
    if (done_) cudaEventDestroy(done_);
  }

  void reduce(const std::vector<Tensor>& params) override {
    autograd::NoGradGuard no_grad;
    cuda::set_device(device_.index);
    const DType bt = opt_.reduce_dtype == "bf16" ? DType::BF16 : DType::F32;
    const int64_t cap = std::max<int64_t>(1, int64_t(opt_.bucket_mb * 1048576.0) / int64_t(dtype_size(bt)));
    std::vector<Tensor> bucket;
    int64_t fill = 0;
    auto flush = [&] {
      if (bucket.empty()) return;
      Tensor buf = Tensor::empty({fill}, bt, device_);
      int64_t off = 0;
      for (const Tensor& g : bucket) {
        buf.slice(0, off, off + g.numel()).view(g.shape()).copy_(g);
        off += g.numel();
      }
      check(ncclAllReduce(buf.data_ptr(), buf.data_ptr(), size_t(fill), bt == DType::BF16 ? ncclBfloat16 : ncclFloat32,
                          ncclAvg, comm_, cuda::stream()),
            "ncclAllReduce");
      off = 0;
      for (const Tensor& g : bucket) {
        Tensor dst = g;
        dst.copy_(buf.slice(0, off, off + g.numel()).view(g.shape()));
        off += g.numel();
      }
      bucket.clear();
      fill = 0;
    };
    for (const Tensor& p : params) {
      const Tensor g = p.grad();
      SK_CHECK(g.defined(), "data parallel: parameter ", p.str(), " has no gradient on rank ", world_.rank,
               " (every rank must produce every gradient)");
      SK_CHECK(g.is_contiguous(), "data parallel: a non-contiguous gradient ", g.str());
      if (fill + g.numel() > cap) flush();
      bucket.push_back(g);
      fill += g.numel();
    }
    flush();
    wait("gradient all-reduce");
  }

  double mean_scalar(double value) override {
    Tensor t = Tensor::full({1}, value, DType::F32, device_);
    check(ncclAllReduce(t.data_ptr(), t.data_ptr(), 1, ncclFloat32, ncclAvg, comm_, cuda::stream()), "ncclAllReduce");
    wait("loss all-reduce");
    return t.item();
  }

  int world_size() const override { return world_.world_size; }
  std::string name() const override { return "nccl-" + opt_.reduce_dtype; }

 private:
  static std::string new_unique_id() {
    ncclUniqueId id;
    const ncclResult_t r = ncclGetUniqueId(&id);
    SK_CHECK(r == ncclSuccess, "ncclGetUniqueId: ", ncclGetErrorString(r));
    return std::string(reinterpret_cast<const char*>(&id), sizeof id);
  }

  void check(ncclResult_t r, const char* what) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    SK_FAIL("rank ", world_.rank, ": ", what, " failed: ", ncclGetErrorString(r), " (", ncclGetLastError(comm_), ")");
  }

  // The watchdog: wait for the collectives issued so far, at most timeout_s.
  void wait(const char* what) {
    SK_CUDA_CHECK(cudaEventRecord(done_, cuda::stream()));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(opt_.timeout_s * 1000));
    while (true) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) return;
      SK_CHECK(q == cudaErrorNotReady, "rank ", world_.rank, ": CUDA error while waiting for the ", what, ": ",
               cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      const bool late = std::chrono::steady_clock::now() > deadline;
      if (async != ncclSuccess || late) {
        const std::string msg = "rank " + std::to_string(world_.rank) + ": the " + what +
                                (late ? " did not complete within " + std::to_string(int(opt_.timeout_s)) +
                                            " s (a peer stopped answering; the launcher names the rank that died)"
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
  NcclReducerOptions opt_;
  Rendezvous rv_;
  ncclComm_t comm_ = nullptr;
  cudaEvent_t done_ = nullptr;
};

}  // namespace

std::unique_ptr<GradientReducer> make_nccl_reducer(const World& w, Device device, const NcclReducerOptions& o) {
  SK_CHECK(device.is_cuda(), "data parallel with NCCL needs CUDA devices; train.device resolved to ", device.str(),
           " on rank ", w.rank);
  return std::make_unique<NcclReducer>(w, device, o);
}
#else
std::unique_ptr<GradientReducer> make_nccl_reducer(const World& w, Device, const NcclReducerOptions&) {
  SK_FAIL("this build has no NCCL (a CUDA build finds it in the CUDA toolkit); cannot train in a world of ",
          w.world_size, " processes (rank ", w.rank, ", from the ", w.source, " environment)");
}
#endif

}  // namespace sk::dist
