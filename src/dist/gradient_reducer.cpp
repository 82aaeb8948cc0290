// The bucketed data-parallel gradient reducer (gradient_reducer.h).
#include "dist/gradient_reducer.h"

#include <algorithm>

#include "autograd/node.h"
#include "util/check.h"

namespace sk::dist {

BucketReducer::BucketReducer(Communicator& comm, const std::string& reduce_dtype, double bucket_mb)
    : comm_(comm), reduce_dtype_(reduce_dtype), bucket_mb_(bucket_mb) {
  SK_CHECK(reduce_dtype == "f32" || reduce_dtype == "bf16", "dist.reduce_dtype '", reduce_dtype,
           "' is not one of: f32, bf16");
  SK_CHECK(reduce_dtype == "f32" || comm.name() == "nccl", "dist.reduce_dtype=bf16 needs the NCCL backend (CUDA); the ",
           comm.name(), " backend reduces in f32 (rank ", comm.rank(), ")");
}

void BucketReducer::reduce(const std::vector<Tensor>& params) {
  autograd::NoGradGuard no_grad;
  const Device dev = comm_.device();
  const DType bt = reduce_dtype_ == "bf16" ? DType::BF16 : DType::F32;
  const int64_t cap = std::max<int64_t>(1, int64_t(bucket_mb_ * 1048576.0) / int64_t(dtype_size(bt)));
  std::vector<Tensor> bucket;
  int64_t fill = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    Tensor buf = Tensor::empty({fill}, bt, dev);
    int64_t off = 0;
    for (const Tensor& g : bucket) {
      buf.slice(0, off, off + g.numel()).view(g.shape()).copy_(g);
      off += g.numel();
    }
    comm_.all_reduce_mean(buf);
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
    SK_CHECK(g.defined(), "data parallel: parameter ", p.str(), " has no gradient on rank ", comm_.rank(),
             " (every rank must produce every gradient)");
    SK_CHECK(g.is_contiguous(), "data parallel: a non-contiguous gradient ", g.str());
    SK_CHECK(g.device() == dev, "data parallel: a gradient on ", g.device().str(), ", the communicator is on ", dev.str());
    if (fill > 0 && fill + g.numel() > cap) flush();
    bucket.push_back(g);
    fill += g.numel();
  }
  flush();
}

std::unique_ptr<GradientReducer> make_gradient_reducer(Communicator& comm, const std::string& reduce_dtype,
                                                       double bucket_mb) {
  if (comm.world_size() == 1) return std::make_unique<LocalReducer>();
  return std::make_unique<BucketReducer>(comm, reduce_dtype, bucket_mb);
}

}  // namespace sk::dist
