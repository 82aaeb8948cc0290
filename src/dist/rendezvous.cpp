// The TCP rendezvous (rendezvous.h).
#include "dist/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>

#include "util/check.h"

namespace sk::dist {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x56524b53;  // "SKRV"

int ms_left(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : int(ms);
}

// Reads exactly n bytes before the deadline; false on timeout or a closed connection.
bool read_all(int fd, void* buf, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    pollfd pf{fd, POLLIN, 0};
    const int rc = ::poll(&pf, 1, ms_left(deadline));
    if (rc <= 0) return false;
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got <= 0) return false;
    p += got;
    n -= size_t(got);
  }
  return true;
}

void write_all(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL);
    if (put <= 0) return;  // the peer is gone; its absence is reported elsewhere
    p += put;
    n -= size_t(put);
  }
}

void send_reply(int fd, uint32_t status, const std::string& bytes) {
  const uint32_t head[2] = {status, uint32_t(bytes.size())};
  write_all(fd, head, sizeof head);
  write_all(fd, bytes.data(), bytes.size());
}

std::string where(const World& w) { return "rendezvous at " + w.master_addr + ":" + std::to_string(w.master_port); }

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

}  // namespace

Rendezvous::Rendezvous(Rendezvous&& o) noexcept
    : rank_(o.rank_), world_(o.world_), blob_(std::move(o.blob_)), listen_fd_(o.listen_fd_), peers_(std::move(o.peers_)) {
  o.listen_fd_ = -1;
  o.peers_.clear();
}

Rendezvous::~Rendezvous() {
  for (int fd : peers_)
    if (fd >= 0) ::close(fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

Rendezvous Rendezvous::form(const World& w, const std::string& blob, double timeout_s) {
  SK_CHECK(w.world_size >= 1 && w.rank >= 0 && w.rank < w.world_size, "rendezvous: rank ", w.rank,
           " is not in a world of ", w.world_size);
  Rendezvous rv;
  rv.rank_ = w.rank;
  rv.world_ = w.world_size;
  const auto deadline = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
  if (w.world_size == 1) {
    rv.blob_ = blob;
    return rv;
  }
  if (w.rank == 0) {
    rv.listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SK_CHECK(rv.listen_fd_ >= 0, where(w), ": socket: ", std::strerror(errno));
    const int one = 1;
    ::setsockopt(rv.listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(w.master_port));
    if (::bind(rv.listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      const int e = errno;
      SK_FAIL(where(w), ": rank 0 cannot listen on port ", w.master_port, ": ", std::strerror(e),
              e == EADDRINUSE ? " (the port is in use: another job, or a previous run still exiting; set MASTER_PORT / "
                                "--master-port to a free port)"
                              : "");
    }
    SK_CHECK(::listen(rv.listen_fd_, 1024) == 0, where(w), ": listen: ", std::strerror(errno));
    rv.peers_.assign(size_t(w.world_size), -1);
    int arrived = 1;
    std::string failure;
    while (arrived < w.world_size && failure.empty()) {
      pollfd pf{rv.listen_fd_, POLLIN, 0};
      if (::poll(&pf, 1, ms_left(deadline)) <= 0) break;
      const int fd = ::accept4(rv.listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      uint32_t hello[3];
      if (!read_all(fd, hello, sizeof hello, deadline) || hello[0] != kMagic) {
        ::close(fd);  // not one of ours (a port scanner, a stray client)
        continue;
      }
      const int r = int(hello[1]), ws = int(hello[2]);
      std::string err;
      if (ws != w.world_size)
        err = "rank " + std::to_string(r) + " has world size " + std::to_string(ws) + " but rank 0 has " +
              std::to_string(w.world_size) + " (every rank must be started with the same WORLD_SIZE)";
      else if (r <= 0 || r >= w.world_size)
        err = "a process claims rank " + std::to_string(r) + ", outside 1.." + std::to_string(w.world_size - 1);
      else if (rv.peers_[size_t(r)] >= 0)
        err = "two processes claim rank " + std::to_string(r) + " (duplicate RANK)";
      if (!err.empty()) {
        send_reply(fd, 1, where(w) + ": " + err);
        ::close(fd);
        failure = err;
        break;
      }
      const int nodelay = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
      rv.peers_[size_t(r)] = fd;
      ++arrived;
    }
    if (failure.empty() && arrived < w.world_size) {
      std::vector<int> missing;
      for (int r = 1; r < w.world_size; ++r)
        if (rv.peers_[size_t(r)] < 0) missing.push_back(r);
      failure = std::to_string(missing.size()) + " of " + std::to_string(w.world_size) + " ranks never arrived within " +
                std::to_string(int(timeout_s)) + " s: rank" + (missing.size() > 1 ? "s " : " ") + rank_list(missing);
    }
    if (!failure.empty()) {
      for (int r = 1; r < w.world_size; ++r)
        if (rv.peers_[size_t(r)] >= 0) send_reply(rv.peers_[size_t(r)], 1, where(w) + ": " + failure);
      SK_FAIL(where(w), ": ", failure);
    }
    for (int r = 1; r < w.world_size; ++r) send_reply(rv.peers_[size_t(r)], 0, blob);
    rv.blob_ = blob;
    return rv;
  }

  // Rank > 0: connect (retrying while rank 0 is not listening yet), hello, wait for the reply.
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const int gai = ::getaddrinfo(w.master_addr.c_str(), std::to_string(w.master_port).c_str(), &hints, &res);
  SK_CHECK(gai == 0 && res, where(w), ": cannot resolve MASTER_ADDR '", w.master_addr, "': ", ::gai_strerror(gai));
  int fd = -1;
  std::string last_error = "no attempt";
  while (true) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
    last_error = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (ms_left(deadline) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::freeaddrinfo(res);
  SK_CHECK(fd >= 0, where(w), ": rank ", w.rank, " could not reach rank 0 within ", int(timeout_s), " s (", last_error,
           "); is rank 0 running, and are MASTER_ADDR / MASTER_PORT the same for every rank?");
  const int nodelay = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
  rv.peers_ = {fd};
  const uint32_t hello[3] = {kMagic, uint32_t(w.rank), uint32_t(w.world_size)};
  write_all(fd, hello, sizeof hello);
  uint32_t head[2];
  SK_CHECK(read_all(fd, head, sizeof head, deadline), where(w), ": rank ", w.rank,
           " got no answer from rank 0 within ", int(timeout_s), " s (other ranks missing, or rank 0 died)");
  std::string bytes(head[1], '\0');
  SK_CHECK(read_all(fd, bytes.data(), bytes.size(), deadline), where(w), ": rank ", w.rank,
           ": the connection to rank 0 broke during the rendezvous");
  SK_CHECK(head[0] == 0, bytes);
  rv.blob_ = std::move(bytes);
  return rv;
}

void Rendezvous::barrier(double timeout_s) {
  if (world_ == 1) return;
  const auto deadline = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
  auto read_abort = [&](int fd) {
    uint32_t n = 0;
    std::string msg = "(no message)";
    if (read_all(fd, &n, sizeof n, deadline)) {
      msg.assign(n, '\0');
      read_all(fd, msg.data(), n, deadline);
    }
    return msg;
  };
  if (rank_ == 0) {
    std::vector<int> missing;
    for (int r = 1; r < world_; ++r) {
      char c = 0;
      if (!read_all(peers_[size_t(r)], &c, 1, deadline)) {
        missing.push_back(r);
        continue;
      }
      if (c == 'A') {
        const std::string msg = read_abort(peers_[size_t(r)]);
        abort(msg);
        SK_FAIL("rank ", r, " aborted: ", msg);
      }
    }
    if (!missing.empty()) {
      const std::string msg = "barrier: rank" + std::string(missing.size() > 1 ? "s " : " ") + rank_list(missing) +
                              " did not arrive within " + std::to_string(int(timeout_s)) + " s";
      abort(msg);
      SK_FAIL(msg);
    }
    for (int r = 1; r < world_; ++r) write_all(peers_[size_t(r)], "G", 1);
    return;
  }
  write_all(peers_[0], "B", 1);
  char c = 0;
  SK_CHECK(read_all(peers_[0], &c, 1, deadline), "barrier: rank ", rank_, " got no answer from rank 0 within ",
           int(timeout_s), " s");
  if (c == 'A') SK_FAIL("aborted by another rank: ", read_abort(peers_[0]));
  SK_CHECK(c == 'G', "barrier: rank ", rank_, ": unexpected byte from rank 0");
}

void Rendezvous::abort(const std::string& message) {
  const uint32_t n = uint32_t(message.size());
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (peers_[i] < 0) continue;
    write_all(peers_[i], "A", 1);
    write_all(peers_[i], &n, sizeof n);
    write_all(peers_[i], message.data(), message.size());
  }
}

std::string Rendezvous::poll_peers() {
  if (world_ == 1) return "";
  const auto soon = Clock::now() + std::chrono::seconds(2);
  for (size_t i = 0; i < peers_.size(); ++i) {
    const int fd = peers_[i];
    if (fd < 0) continue;
    pollfd pf{fd, POLLIN, 0};
    if (::poll(&pf, 1, 0) <= 0) continue;
    char c = 0;
    const ssize_t got = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    const int r = rank_ == 0 ? int(i) : 0;
    if (got <= 0) {
      const std::string msg = "rank " + std::to_string(r) + " closed its connection (the process died or exited)";
      if (rank_ == 0) abort("rank 0: " + msg);
      return msg;
    }
    if (c != 'A') continue;  // a barrier byte: for barrier()
    ::recv(fd, &c, 1, 0);
    uint32_t n = 0;
    std::string text = "(no message)";
    if (read_all(fd, &n, sizeof n, soon)) {
      text.assign(n, '\0');
      read_all(fd, text.data(), n, soon);
    }
    if (rank_ == 0) {
      abort(text);
      return "rank " + std::to_string(r) + " aborted: " + text;
    }
    return "aborted: " + text;
  }
  return "";
}

}  // namespace sk::dist
