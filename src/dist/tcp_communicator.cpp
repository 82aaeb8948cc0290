// The TCP collective backend (tcp_communicator.h).
#include "dist/tcp_communicator.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "autograd/node.h"
#include "util/check.h"

namespace sk::dist {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x43544b53;  // "SKTC"

enum class Io { ok, closed, timeout };

int ms_left(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : int(ms > 1 << 30 ? 1 << 30 : ms);
}

Io read_all(int fd, void* buf, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    pollfd pf{fd, POLLIN, 0};
    const int rc = ::poll(&pf, 1, ms_left(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return Io::timeout;
    if (rc < 0) return Io::closed;
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return Io::closed;
    p += got;
    n -= size_t(got);
  }
  return Io::ok;
}

Io write_all(int fd, const void* buf, size_t n, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    pollfd pf{fd, POLLOUT, 0};
    const int rc = ::poll(&pf, 1, ms_left(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return Io::timeout;
    if (rc < 0 || (pf.revents & (POLLERR | POLLHUP))) return Io::closed;
    const ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (put < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (put <= 0) return Io::closed;
    p += put;
    n -= size_t(put);
  }
  return Io::ok;
}

const char* op_name(uint32_t op) {
  switch (op) {
    case 1: return "all_reduce";
    case 2: return "reduce_scatter";
    case 3: return "all_gather";
    case 4: return "sum_scalar";
    case 5: return "barrier";
  }
  return "an unknown collective";
}

// Header of a message: magic, kind ('C' collective data up, 'R' result down, 'A' abort with a
// message), op, sequence number (low 32 bits), byte count.
struct Header {
  uint32_t magic, kind, op, seq, bytes;
};

void check_f32_1d(const Tensor& t, const char* what) {
  SK_CHECK(t.defined() && t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous(), "tcp communicator: ",
           what, " must be a contiguous f32 CPU tensor, got ", t.defined() ? t.str() : std::string("undefined"),
           " (dist.reduce_dtype=bf16 needs NCCL)");
}

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.data_ptr()), size_t(t.numel()) * sizeof(float));
}

}  // namespace

TcpCommunicator::TcpCommunicator(const World& w, double timeout_s)
    : world_(w), timeout_s_(timeout_s), rv_(Rendezvous::form(w, "tcp", timeout_s)) {}

TcpCommunicator::~TcpCommunicator() = default;

void TcpCommunicator::fail(const std::string& message) {
  broken_ = true;
  SK_FAIL(message);
}

std::string TcpCommunicator::exchange(
    Op op, std::string send, const std::function<std::vector<std::string>(const std::vector<std::string>&)>& combine) {
  SK_CHECK(!broken_, "rank ", world_.rank, ": the communicator failed earlier and cannot be used");
  const uint32_t seq = uint32_t(++seq_);
  const std::string what = std::string(op_name(op)) + " #" + std::to_string(seq);
  const std::string secs = std::to_string(int(timeout_s_));
  const auto deadline = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s_ * 1000));
  const int W = world_.world_size;
  if (world_.rank == 0) {
    std::vector<std::string> inputs(static_cast<size_t>(W));
    inputs[0] = std::move(send);
    // Tells every rank still connected (except `skip`) to stop, then fails here.
    auto abort_all = [&](const std::string& msg, int skip) {
      const Header h{kMagic, 'A', op, seq, uint32_t(msg.size())};
      const auto d = Clock::now() + std::chrono::seconds(2);
      for (int r = 1; r < W; ++r) {
        if (r == skip) continue;
        if (write_all(rv_.peer_fd(r), &h, sizeof h, d) == Io::ok) write_all(rv_.peer_fd(r), msg.data(), msg.size(), d);
      }
      fail(msg);
    };
    for (int r = 1; r < W; ++r) {
      const int fd = rv_.peer_fd(r);
      Header h{};
      const Io io = read_all(fd, &h, sizeof h, deadline);
      if (io == Io::closed)
        abort_all("rank 0: rank " + std::to_string(r) + " closed its connection during " + what +
                      " (the process died or exited early)", r);
      if (io == Io::timeout)
        abort_all("rank 0: rank " + std::to_string(r) + " did not join " + what + " within " + secs +
                      " s (dist.timeout_s; the rank stalled or is stuck)", r);
      std::string payload(h.bytes, '\0');
      if (h.magic != kMagic || read_all(fd, payload.data(), payload.size(), deadline) != Io::ok)
        abort_all("rank 0: the connection to rank " + std::to_string(r) + " broke during " + what, r);
      if (h.kind == 'A') abort_all("rank " + std::to_string(r) + " aborted: " + payload, r);
      if (h.op != op || h.seq != seq)
        abort_all("rank 0: rank " + std::to_string(r) + " called " + op_name(h.op) + " #" + std::to_string(h.seq) +
                      " while rank 0 called " + what + " (the ranks ran different collectives)", -1);
      inputs[size_t(r)] = std::move(payload);
    }
    std::vector<std::string> replies;
    try {
      replies = combine(inputs);
    } catch (const Error& e) {
      abort_all(std::string("rank 0: ") + what + ": " + e.what(), -1);
    }
    for (int r = 1; r < W; ++r) {
      const Header h{kMagic, 'R', op, seq, uint32_t(replies[size_t(r)].size())};
      const int fd = rv_.peer_fd(r);
      if (write_all(fd, &h, sizeof h, deadline) != Io::ok ||
          write_all(fd, replies[size_t(r)].data(), replies[size_t(r)].size(), deadline) != Io::ok)
        abort_all("rank 0: rank " + std::to_string(r) + " stopped reading during " + what +
                      " (the process died or stalled)", r);
    }
    return std::move(replies[0]);
  }
  const int fd = rv_.peer_fd(0);
  const Header up{kMagic, 'C', op, seq, uint32_t(send.size())};
  SK_CHECK(send.size() < (size_t(1) << 32), "tcp communicator: a message of ", send.size(), " bytes is too large");
  if (write_all(fd, &up, sizeof up, deadline) != Io::ok || write_all(fd, send.data(), send.size(), deadline) != Io::ok)
    fail("rank " + std::to_string(world_.rank) + ": cannot send to rank 0 during " + what +
         " (rank 0 died or stalled)");
  Header h{};
  const Io io = read_all(fd, &h, sizeof h, deadline);
  if (io == Io::closed)
    fail("rank " + std::to_string(world_.rank) + ": rank 0 closed its connection during " + what +
         " (the process died or exited early)");
  if (io == Io::timeout)
    fail("rank " + std::to_string(world_.rank) + ": no answer from rank 0 in " + what + " within " + secs +
         " s (dist.timeout_s; rank 0 or another rank stalled)");
  std::string payload(h.bytes, '\0');
  if (h.magic != kMagic || read_all(fd, payload.data(), payload.size(), deadline) != Io::ok)
    fail("rank " + std::to_string(world_.rank) + ": the connection to rank 0 broke during " + what);
  if (h.kind == 'A') fail("rank " + std::to_string(world_.rank) + ": aborted: " + payload);
  if (h.op != op || h.seq != seq)
    fail("rank " + std::to_string(world_.rank) + ": rank 0 answered " + op_name(h.op) + " #" + std::to_string(h.seq) +
         " to " + what + " (the ranks ran different collectives)");
  return payload;
}

namespace {
// out[i] = f32((sum over ranks in rank order, in f64, of in_r[offset + i]) / divisor)
std::string sum_f32(const std::vector<std::string>& inputs, size_t offset, size_t n, double divisor) {
  std::vector<double> acc(n, 0.0);
  for (const std::string& in : inputs) {
    const float* p = reinterpret_cast<const float*>(in.data()) + offset;
    for (size_t i = 0; i < n; ++i) acc[i] += double(p[i]);
  }
  std::string out(n * sizeof(float), '\0');
  float* o = reinterpret_cast<float*>(out.data());
  for (size_t i = 0; i < n; ++i) o[i] = float(acc[i] / divisor);
  return out;
}
}  // namespace

void TcpCommunicator::all_reduce_mean(Tensor& buf) {
  check_f32_1d(buf, "the all-reduce buffer");
  const size_t n = size_t(buf.numel());
  const int W = world_.world_size;
  const std::string r = exchange(kAllReduce, bytes_of(buf), [&](const std::vector<std::string>& in) {
    for (size_t k = 0; k < in.size(); ++k)
      SK_CHECK(in[k].size() == n * 4, "all_reduce: rank ", k, " sent ", in[k].size() / 4, " floats, rank 0 ", n);
    return std::vector<std::string>(size_t(W), sum_f32(in, 0, n, double(W)));
  });
  std::memcpy(buf.data_ptr(), r.data(), n * 4);
}

void TcpCommunicator::reduce_scatter_mean(const Tensor& in, Tensor& out) {
  check_f32_1d(in, "the reduce-scatter input");
  check_f32_1d(out, "the reduce-scatter output");
  const int W = world_.world_size;
  const size_t n = size_t(out.numel());
  SK_CHECK(size_t(in.numel()) == n * size_t(W), "reduce_scatter: input of ", in.numel(), " elements for an output of ",
           n, " in a world of ", W);
  const std::string r = exchange(kReduceScatter, bytes_of(in), [&](const std::vector<std::string>& ins) {
    for (size_t k = 0; k < ins.size(); ++k)
      SK_CHECK(ins[k].size() == n * W * 4, "reduce_scatter: rank ", k, " sent ", ins[k].size() / 4,
               " floats, rank 0 ", n * W);
    std::vector<std::string> outs;
    for (int k = 0; k < W; ++k) outs.push_back(sum_f32(ins, size_t(k) * n, n, double(W)));
    return outs;
  });
  std::memcpy(out.data_ptr(), r.data(), n * 4);
}

void TcpCommunicator::all_gather(const Tensor& in, Tensor& out) {
  check_f32_1d(in, "the all-gather input");
  check_f32_1d(out, "the all-gather output");
  const int W = world_.world_size;
  const size_t n = size_t(in.numel());
  SK_CHECK(size_t(out.numel()) == n * size_t(W), "all_gather: output of ", out.numel(), " elements for an input of ",
           n, " in a world of ", W);
  const std::string r = exchange(kAllGather, bytes_of(in), [&](const std::vector<std::string>& ins) {
    std::string all;
    for (size_t k = 0; k < ins.size(); ++k) {
      SK_CHECK(ins[k].size() == n * 4, "all_gather: rank ", k, " sent ", ins[k].size() / 4, " floats, rank 0 ", n);
      all += ins[k];
    }
    return std::vector<std::string>(size_t(W), all);
  });
  std::memcpy(out.data_ptr(), r.data(), n * W * 4);
}

double TcpCommunicator::sum_scalar(double value) {
  std::string send(sizeof(double), '\0');
  std::memcpy(send.data(), &value, sizeof value);
  const int W = world_.world_size;
  const std::string r = exchange(kSumScalar, send, [&](const std::vector<std::string>& ins) {
    double acc = 0;
    for (size_t k = 0; k < ins.size(); ++k) {
      SK_CHECK(ins[k].size() == sizeof(double), "sum_scalar: rank ", k, " sent ", ins[k].size(), " bytes");
      double v;
      std::memcpy(&v, ins[k].data(), sizeof v);
      acc += v;
    }
    std::string o(sizeof(double), '\0');
    std::memcpy(o.data(), &acc, sizeof acc);
    return std::vector<std::string>(size_t(W), o);
  });
  double out;
  std::memcpy(&out, r.data(), sizeof out);
  return out;
}

void TcpCommunicator::barrier() {
  exchange(kBarrier, std::string(), [&](const std::vector<std::string>&) {
    return std::vector<std::string>(size_t(world_.world_size));
  });
}

}  // namespace sk::dist
