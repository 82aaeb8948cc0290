// The process world from the environment (world.h).
#include "dist/world.h"

#include <cstdlib>

#include "util/check.h"

namespace sk::dist {

namespace {

int parse_int(const std::string& name, const std::string& value, int min) {
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  SK_CHECK(!value.empty() && *end == '\0' && v >= min && v < (1L << 30), "environment: ", name, "=\"", value,
           "\" is not an integer >= ", min);
  return int(v);
}

// An integer variable, or `fallback` when unset.
int env_int(const EnvLookup& env, const std::string& name, int fallback, int min) {
  const auto v = env(name);
  return v ? parse_int(name, *v, min) : fallback;
}

// "01-04" or "7" inside brackets -> the numbers with the zero padding of the first bound.
void expand_range(const std::string& list, const std::string& prefix, const std::string& item,
                  std::vector<std::string>& out) {
  const size_t dash = item.find('-');
  const std::string lo = item.substr(0, dash), hi = dash == std::string::npos ? lo : item.substr(dash + 1);
  auto digits = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; };
  SK_CHECK(digits(lo) && digits(hi), "SLURM_JOB_NODELIST \"", list, "\": bad range '", item, "'");
  const long a = std::stol(lo), b = std::stol(hi);
  SK_CHECK(a <= b && b - a < 100000, "SLURM_JOB_NODELIST \"", list, "\": bad range '", item, "'");
  for (long i = a; i <= b; ++i) {
    std::string n = std::to_string(i);
    if (n.size() < lo.size()) n.insert(0, lo.size() - n.size(), '0');
    out.push_back(prefix + n);
  }
}

}  // namespace

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

std::vector<std::string> expand_slurm_nodelist(const std::string& list) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < list.size()) {
    // One host expression: a prefix, optionally one bracket group, up to a comma at depth 0.
    size_t j = i;
    std::string prefix;
    while (j < list.size() && list[j] != ',' && list[j] != '[') prefix += list[j++];
    if (j < list.size() && list[j] == '[') {
      const size_t close = list.find(']', j);
      SK_CHECK(close != std::string::npos, "SLURM_JOB_NODELIST \"", list, "\": '[' without ']'");
      SK_CHECK(!prefix.empty(), "SLURM_JOB_NODELIST \"", list, "\": a range without a host name");
      const std::string inner = list.substr(j + 1, close - j - 1);
      size_t s = 0;
      while (s <= inner.size()) {
        const size_t c = inner.find(',', s);
        expand_range(list, prefix, inner.substr(s, c == std::string::npos ? std::string::npos : c - s), out);
        if (c == std::string::npos) break;
        s = c + 1;
      }
      j = close + 1;
      SK_CHECK(j == list.size() || list[j] == ',', "SLURM_JOB_NODELIST \"", list,
               "\": unexpected text after ']' at position ", j);
    } else {
      SK_CHECK(!prefix.empty(), "SLURM_JOB_NODELIST \"", list, "\": empty host name at position ", i);
      out.push_back(prefix);
    }
    i = j + 1;
  }
  SK_CHECK(!out.empty(), "SLURM_JOB_NODELIST is empty");
  return out;
}

World world_from_env(const EnvLookup& env) {
  World w;
  if (env("RANK") || env("WORLD_SIZE")) {
    SK_CHECK(env("RANK") && env("WORLD_SIZE"), "environment: RANK and WORLD_SIZE must be set together (torchrun convention)");
    w.source = "torchrun";
    w.rank = env_int(env, "RANK", 0, 0);
    w.world_size = env_int(env, "WORLD_SIZE", 1, 1);
    w.local_rank = env_int(env, "LOCAL_RANK", w.rank, 0);
    w.local_world_size = env_int(env, "LOCAL_WORLD_SIZE", w.world_size, 1);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    w.source = "slurm";
    w.rank = env_int(env, "SLURM_PROCID", 0, 0);
    w.world_size = env_int(env, "SLURM_NTASKS", 1, 1);
    w.local_rank = env_int(env, "SLURM_LOCALID", 0, 0);
    // SLURM_NTASKS_PER_NODE may read "2(x2)"; its leading number is what we need.
    if (const auto per = env("SLURM_NTASKS_PER_NODE")) w.local_world_size = parse_int("SLURM_NTASKS_PER_NODE", per->substr(0, per->find('(')), 1);
    if (const auto nodes = env("SLURM_JOB_NODELIST")) w.master_addr = expand_slurm_nodelist(*nodes).front();
    else if (const auto n2 = env("SLURM_NODELIST")) w.master_addr = expand_slurm_nodelist(*n2).front();
  } else if (env("OMPI_COMM_WORLD_RANK")) {
    w.source = "openmpi";
    w.rank = env_int(env, "OMPI_COMM_WORLD_RANK", 0, 0);
    w.world_size = env_int(env, "OMPI_COMM_WORLD_SIZE", 1, 1);
    w.local_rank = env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0);
    w.local_world_size = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1);
  }
  if (const auto a = env("MASTER_ADDR")) {
    SK_CHECK(!a->empty(), "environment: MASTER_ADDR is empty");
    w.master_addr = *a;
  }
  w.master_port = env_int(env, "MASTER_PORT", w.master_port, 1);
  SK_CHECK(w.master_port <= 65535, "environment: MASTER_PORT=", w.master_port, " is not a TCP port (1..65535)");
  SK_CHECK(w.rank < w.world_size, "environment (", w.source, "): rank ", w.rank, " is not below the world size ",
           w.world_size);
  if (w.source == "slurm" && !env("SLURM_NTASKS_PER_NODE")) w.local_world_size = w.local_rank + 1;  // unknown
  SK_CHECK(w.local_rank < w.local_world_size,
           "environment (", w.source, "): local rank ", w.local_rank, " is not below the local world size ",
           w.local_world_size);
  return w;
}

}  // namespace sk::dist
