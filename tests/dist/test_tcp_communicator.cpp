// The TCP collective backend (src/dist/tcp_communicator.h) with real processes on loopback: each
// test forks one process per rank (its own MASTER_PORT, so tests may run in parallel).
//  - all-reduce / reduce-scatter / all-gather / scalar sums give the exact f64-summed,
//    f32-rounded results on every rank (3 ranks, uneven values);
//  - a rank that dies (SIGKILL) makes the others fail at once naming it; a rank that stalls makes
//    them fail within dist.timeout_s naming it; ranks calling different collectives are an error.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "dist/tcp_communicator.h"
#include "testing/test_helpers.h"
#include "util/check.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {

struct RankOutcome {
  int status = 0;       // waitpid status
  std::string message;  // what the rank wrote (its error, or "ok")
};

// Forks `world` processes; rank r runs body(comm) with a TcpCommunicator, writes "ok" or the
// error text to dir/rank<r>.txt and exits 0 (ok) or 1 (error).
std::vector<RankOutcome> run_world(int world, int port, double timeout_s,
                                   const std::function<void(dist::TcpCommunicator&)>& body) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_tcp_" + std::to_string(port));
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::string msg = "ok";
      int code = 0;
      try {
        dist::World w;
        w.rank = r;
        w.world_size = world;
        w.master_port = port;
        dist::TcpCommunicator comm(w, timeout_s);
        body(comm);
      } catch (const std::exception& e) {
        msg = e.what();
        code = 1;
      }
      std::ofstream(dir / ("rank" + std::to_string(r) + ".txt")) << msg;
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  std::vector<RankOutcome> out(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    ::waitpid(pids[size_t(r)], &out[size_t(r)].status, 0);
    std::ifstream f(dir / ("rank" + std::to_string(r) + ".txt"));
    std::stringstream ss;
    ss << f.rdbuf();
    out[size_t(r)].message = ss.str();
  }
  fs::remove_all(dir);
  return out;
}

Tensor floats(const std::vector<double>& v) { return Tensor::from_vector(v, {int64_t(v.size())}); }

}  // namespace

TEST(TcpCommunicator, collectives_give_the_same_exact_result_on_every_rank) {
  const auto out = run_world(3, 29711, 30, [](dist::TcpCommunicator& c) {
    const int r = c.rank();
    // all-reduce mean: rank r holds (r + 1) * 0.1 + i
    std::vector<double> v;
    for (int i = 0; i < 5; ++i) v.push_back((r + 1) * 0.1 + i);
    Tensor buf = floats(v);
    c.all_reduce_mean(buf);
    for (int i = 0; i < 5; ++i) {
      const double want = double(float((double(float(0.1 + i)) + double(float(0.2 + i)) + double(float(0.3 + i))) / 3.0));
      SK_CHECK(buf.to_vector()[size_t(i)] == want, "all_reduce element ", i, " is ", buf.to_vector()[size_t(i)], " not ", want);
    }
    // reduce-scatter: rank r sends 3 x 2 values 100 * r + k; gets the mean of its slice
    std::vector<double> in;
    for (int k = 0; k < 6; ++k) in.push_back(100.0 * r + k);
    Tensor out = Tensor::zeros({2});
    c.reduce_scatter_mean(floats(in), out);
    for (int i = 0; i < 2; ++i) {
      const double want = 100.0 + double(2 * r + i);  // (0 + 100 + 200) / 3 + k
      SK_CHECK(out.to_vector()[size_t(i)] == want, "reduce_scatter on rank ", r, " element ", i, " is ",
               out.to_vector()[size_t(i)], " not ", want);
    }
    // all-gather: rank r contributes {r, -r}
    Tensor all = Tensor::zeros({6});
    c.all_gather(floats({double(r), double(-r)}), all);
    SK_CHECK(all.to_vector() == std::vector<double>({0, 0, 1, -1, 2, -2}), "all_gather gave ", all.str());
    SK_CHECK(c.sum_scalar(r + 0.5) == 4.5, "sum_scalar");
    SK_CHECK(c.mean_scalar(r) == 1.0, "mean_scalar");
    c.barrier();
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(WIFEXITED(out[size_t(r)].status) && WEXITSTATUS(out[size_t(r)].status) == 0) << out[size_t(r)].message;
    EXPECT_EQ(out[size_t(r)].message, "ok");
  }
}

TEST(TcpCommunicator, a_killed_rank_is_named_at_once) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto out = run_world(3, 29712, 60, [](dist::TcpCommunicator& c) {
    Tensor buf = floats({1, 2, 3});
    c.all_reduce_mean(buf);
    if (c.rank() == 2) ::kill(::getpid(), SIGKILL);
    c.all_reduce_mean(buf);
  });
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20)
      << "the survivors waited for the timeout";
  EXPECT_TRUE(WIFSIGNALED(out[2].status));
  EXPECT_NE(out[0].message.find("rank 2 closed its connection during all_reduce #2"), std::string::npos)
      << out[0].message;
  EXPECT_NE(out[1].message.find("aborted: rank 0: rank 2 closed its connection"), std::string::npos) << out[1].message;
}

TEST(TcpCommunicator, a_stalled_rank_is_named_within_the_timeout) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto out = run_world(2, 29713, 2, [](dist::TcpCommunicator& c) {
    if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(6));
    c.barrier();
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 15);
  EXPECT_NE(out[0].message.find("rank 1 did not join barrier #1 within 2 s"), std::string::npos) << out[0].message;
  EXPECT_FALSE(WIFEXITED(out[0].status) && WEXITSTATUS(out[0].status) == 0);
  // The late rank finds rank 0 gone (or its abort): an error too.
  EXPECT_NE(out[1].message.find("rank 1: "), std::string::npos) << out[1].message;
}

TEST(TcpCommunicator, different_collectives_on_different_ranks_are_an_error) {
  const auto out = run_world(2, 29714, 10, [](dist::TcpCommunicator& c) {
    if (c.rank() == 0) {
      c.barrier();
    } else {
      Tensor b = floats({1});
      c.all_reduce_mean(b);
    }
  });
  EXPECT_NE(out[0].message.find("rank 1 called all_reduce #1 while rank 0 called barrier #1"), std::string::npos)
      << out[0].message;
  EXPECT_NE(out[1].message.find("aborted"), std::string::npos) << out[1].message;
}

TEST(TcpCommunicator, sizes_that_differ_between_ranks_are_an_error) {
  const auto out = run_world(2, 29715, 10, [](dist::TcpCommunicator& c) {
    Tensor b = c.rank() == 0 ? floats({1, 2}) : floats({1, 2, 3});
    c.all_reduce_mean(b);
  });
  EXPECT_NE(out[0].message.find("rank 1 sent 3 floats, rank 0 2"), std::string::npos) << out[0].message;
  EXPECT_NE(out[1].message.find("aborted"), std::string::npos) << out[1].message;
}
