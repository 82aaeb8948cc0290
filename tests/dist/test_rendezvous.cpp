// The TCP rendezvous (src/dist/rendezvous.h) with forked processes on the loopback: a world
// forms and every rank gets rank 0's blob; barriers; a missing peer times out naming it; a wrong
// world size, a duplicate rank and a port in use are clear errors; an abort reaches the others.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "dist/rendezvous.h"
#include "util/check.h"

using namespace sk;

namespace {

// A port unlikely to be taken by a parallel test: from the pid and a counter.
int test_port() {
  static int n = 0;
  return 20000 + int((::getpid() * 7 + n++ * 131) % 30000);
}

dist::World world(int rank, int size, int port) {
  dist::World w;
  w.rank = rank;
  w.world_size = size;
  w.master_port = port;
  return w;
}

// Runs `body` in a child; its exit status is 0 when body returns true.
pid_t fork_child(const std::function<bool()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = false;
    try {
      ok = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    ::_exit(ok ? 0 : 1);
  }
  return pid;
}

bool child_ok(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// The text of the sk::Error `f` throws, or "".
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kBlob(128, '\x5a');

}  // namespace

TEST(Rendezvous, a_world_of_four_forms_and_shares_the_blob) {
  const int port = test_port();
  std::vector<pid_t> kids;
  for (int r = 1; r < 4; ++r)
    kids.push_back(fork_child([=] {
      dist::Rendezvous rv = dist::Rendezvous::form(world(r, 4, port), "", 10);
      rv.barrier(10);
      rv.barrier(10);
      return rv.blob() == kBlob && rv.rank() == r && rv.world_size() == 4;
    }));
  dist::Rendezvous rv = dist::Rendezvous::form(world(0, 4, port), kBlob, 10);
  EXPECT_EQ(rv.blob(), kBlob);
  rv.barrier(10);
  rv.barrier(10);
  for (pid_t k : kids) EXPECT_TRUE(child_ok(k));
}

TEST(Rendezvous, peers_that_start_before_rank_0_retry) {
  const int port = test_port();
  const pid_t kid = fork_child([=] { return dist::Rendezvous::form(world(1, 2, port), "", 10).blob() == "id"; });
  ::usleep(300000);  // rank 1 is already retrying
  dist::Rendezvous rv = dist::Rendezvous::form(world(0, 2, port), "id", 10);
  EXPECT_TRUE(child_ok(kid));
}

TEST(Rendezvous, a_missing_peer_times_out_naming_it) {
  const int port = test_port();
  const pid_t kid = fork_child([=] {
    const std::string e = error_of([=] { dist::Rendezvous::form(world(1, 3, port), "", 10); });
    return e.find("ranks never arrived") != std::string::npos || e.find("rank 2") != std::string::npos;
  });
  const std::string e = error_of([=] { dist::Rendezvous::form(world(0, 3, port), kBlob, 1); });
  EXPECT_NE(e.find("1 of 3 ranks never arrived within 1 s: rank 2"), std::string::npos) << e;
  EXPECT_TRUE(child_ok(kid));
}

TEST(Rendezvous, rank_0_unreachable_times_out) {
  const std::string e = error_of([] { dist::Rendezvous::form(world(1, 2, test_port()), "", 0.5); });
  EXPECT_NE(e.find("could not reach rank 0"), std::string::npos) << e;
}

TEST(Rendezvous, a_wrong_world_size_is_an_error_on_both_sides) {
  const int port = test_port();
  const pid_t kid = fork_child([=] {
    const std::string e = error_of([=] { dist::Rendezvous::form(world(1, 3, port), "", 10); });
    return e.find("rank 1 has world size 3 but rank 0 has 2") != std::string::npos;
  });
  const std::string e = error_of([=] { dist::Rendezvous::form(world(0, 2, port), kBlob, 10); });
  EXPECT_NE(e.find("rank 1 has world size 3 but rank 0 has 2"), std::string::npos) << e;
  EXPECT_TRUE(child_ok(kid));
}

TEST(Rendezvous, a_duplicate_rank_is_an_error) {
  const int port = test_port();
  std::vector<pid_t> kids;
  for (int i = 0; i < 2; ++i)
    kids.push_back(fork_child([=] {
      ::usleep(i * 200000);  // the second one arrives second
      const std::string e = error_of([=] { dist::Rendezvous::form(world(1, 3, port), "", 10); });
      return e.find("duplicate RANK") != std::string::npos;
    }));
  const std::string e = error_of([=] { dist::Rendezvous::form(world(0, 3, port), kBlob, 10); });
  EXPECT_NE(e.find("two processes claim rank 1"), std::string::npos) << e;
  for (pid_t k : kids) EXPECT_TRUE(child_ok(k));
}

TEST(Rendezvous, a_port_in_use_is_named) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = 0;  // any free port
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  const std::string e = error_of([=] { dist::Rendezvous::form(world(0, 2, port), kBlob, 1); });
  EXPECT_NE(e.find("the port is in use"), std::string::npos) << e;
  EXPECT_NE(e.find(std::to_string(port)), std::string::npos) << e;
  ::close(fd);
}

TEST(Rendezvous, an_abort_reaches_the_others_at_their_barrier) {
  const int port = test_port();
  // Rank 2 aborts instead of entering the barrier; rank 1 must see its message.
  const pid_t r1 = fork_child([=] {
    dist::Rendezvous rv = dist::Rendezvous::form(world(1, 3, port), "", 10);
    const std::string e = error_of([&] { rv.barrier(10); });
    return e.find("watchdog: rank 2 stuck") != std::string::npos;
  });
  const pid_t r2 = fork_child([=] {
    dist::Rendezvous rv = dist::Rendezvous::form(world(2, 3, port), "", 10);
    rv.abort("watchdog: rank 2 stuck");
    ::usleep(200000);
    return true;
  });
  dist::Rendezvous rv = dist::Rendezvous::form(world(0, 3, port), kBlob, 10);
  const std::string e = error_of([&] { rv.barrier(10); });
  EXPECT_NE(e.find("rank 2 aborted: watchdog: rank 2 stuck"), std::string::npos) << e;
  EXPECT_TRUE(child_ok(r1));
  EXPECT_TRUE(child_ok(r2));
}

// poll_peers (what the NCCL watchdog checks while a collective runs): nothing while the peers
// are alive (a barrier byte in flight is left for barrier()); a peer that dies is named at once on
// rank 0, and the other ranks learn it as an abort.
TEST(Rendezvous, poll_peers_names_a_rank_that_died) {
  const int port = test_port();
  const pid_t r1 = fork_child([=] {
    dist::Rendezvous rv = dist::Rendezvous::form(world(1, 3, port), "", 10);
    rv.barrier(10);
    std::string seen;
    for (int i = 0; i < 200 && seen.empty(); ++i) {
      seen = rv.poll_peers();
      ::usleep(20000);
    }
    return seen.find("aborted: rank 0: rank 2 closed its connection") != std::string::npos;
  });
  const pid_t r2 = fork_child([=] {
    dist::Rendezvous rv = dist::Rendezvous::form(world(2, 3, port), "", 10);
    rv.barrier(10);
    ::usleep(300000);
    ::_exit(9);  // dies without a word
    return true;
  });
  dist::Rendezvous rv = dist::Rendezvous::form(world(0, 3, port), kBlob, 10);
  EXPECT_EQ(rv.poll_peers(), "");
  rv.barrier(10);
  std::string seen;
  for (int i = 0; i < 200 && seen.empty(); ++i) {
    seen = rv.poll_peers();
    ::usleep(20000);
  }
  EXPECT_EQ(seen, "rank 2 closed its connection (the process died or exited)");
  EXPECT_TRUE(child_ok(r1));
  int st = 0;
  ::waitpid(r2, &st, 0);
}
