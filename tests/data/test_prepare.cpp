// `sparsek prepare` (src/data/prepare.h) on a temp dir of small text files and JSONL files, with
// a tiny byte-level BPE tokenizer written by the test (256 byte tokens, 2 merges, <|endoftext|>):
// manifest counts against the shards, every document decoded back after its end-of-text token,
// globs, identical shards for --threads 1 and 4, shard boundaries, stale shard removal, the split
// rule, and the error messages (missing/empty input, unwritable output, bad JSONL line as
// FILE:LINE); with build/sparsek next to the test binary, the CLI's exit status 2 for each.
#include <gtest/gtest.h>

#include "testing/test_helpers.h"
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "data/bpe_sha256.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "util/check.h"

using namespace sk;
using namespace sk::data;
namespace fs = std::filesystem;

using sk::testing::error_of;

namespace {

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// GPT-2's byte -> printable-unicode map, as UTF-8 strings.
std::vector<std::string> byte_chars() {
  std::vector<int> bs, cs;
  for (int b = 0; b < 256; ++b)
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) bs.push_back(b);
  cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  std::vector<std::string> out(256);
  for (size_t i = 0; i < bs.size(); ++i) {
    const int c = cs[i];
    std::string u;
    if (c < 0x80) u += static_cast<char>(c);
    else {
      u += static_cast<char>(0xc0 | (c >> 6));
      u += static_cast<char>(0x80 | (c & 0x3f));
    }
    out[bs[i]] = u;
  }
  return out;
}

// A tiny byte-level BPE tokenizer.json: ids 0..255 the bytes, 256 "Ġt", 257 "he", 258 <|endoftext|>.
void write_tiny_tokenizer(const fs::path& p) {
  const auto bc = byte_chars();
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[bc[b]] = b;
  vocab[bc[' '] + "t"] = 256;
  vocab["he"] = 257;
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 258}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {bc[' '] + " t", "h e"}}}}};
  write_file(p, j.dump());
}


class PrepareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sk::testing::fresh_test_dir("sk_test_prepare");
    write_tiny_tokenizer(dir_ / "tok.json");
    tok_ = std::make_unique<Tokenizer>(Tokenizer::load_hf_json((dir_ / "tok.json").string()));
    // Texts: a directory (3 .txt, 1 .md, an empty .txt) and a JSONL file (blank line, empty record).
    write_file(dir_ / "docs/b.txt", "the second file\nhas two lines\n");
    write_file(dir_ / "docs/a.txt", "the first file");
    write_file(dir_ / "docs/sub/c.txt", "nested: <|endoftext|> stays text");
    write_file(dir_ / "docs/sub/skip.md", "not matched by the glob");
    write_file(dir_ / "docs/empty.txt", "");
    fs::create_symlink("a.txt", dir_ / "docs/link.txt");  // not followed (a duplicate)
    write_file(dir_ / "corpus.jsonl",
               "{\"text\": \"json one\", \"id\": 1}\n\n{\"text\": \"json two \\u00e9\"}\r\n{\"text\": \"\"}\n"
               "{\"text\": \"json four\"}");
    expected_ = {"the first file", "the second file\nhas two lines\n", "nested: <|endoftext|> stays text",
                 "json one", "json two \xc3\xa9", "json four"};
  }
  void TearDown() override { fs::remove_all(dir_); }

  PrepareConfig config(const std::string& out) const {
    PrepareConfig c;
    c.tokenizer = (dir_ / "tok.json").string();
    c.out_dir = (dir_ / out).string();
    c.name = "tiny";
    c.inputs = {(dir_ / "docs").string(), (dir_ / "corpus.jsonl").string()};
    c.globs = {"*.txt"};
    c.val_fraction = 0.3;
    c.seed = 5;
    c.progress = false;
    c.command_line = "sparsek prepare (test)";
    return c;
  }

  // All tokens of a split's shards, in order.
  std::vector<uint32_t> split_tokens(const std::string& out, const std::string& split) const {
    std::vector<uint32_t> all;
    for (const auto& p : find_shards((dir_ / out).string(), "tiny", split)) {
      const auto t = Shard::open(p).tokens();
      all.insert(all.end(), t.begin(), t.end());
    }
    return all;
  }

  // Documents of a token stream: the pieces after each end-of-text token, decoded.
  std::vector<std::string> documents(const std::vector<uint32_t>& toks) const {
    std::vector<std::string> docs;
    EXPECT_TRUE(toks.empty() || toks[0] == tok_->eot_id()) << "a split must start with the end-of-text token";
    std::vector<uint32_t> cur;
    for (size_t i = 0; i <= toks.size(); ++i) {
      if (i == toks.size() || toks[i] == tok_->eot_id()) {
        if (i > 0) docs.push_back(tok_->decode(cur));
        cur.clear();
      } else {
        cur.push_back(toks[i]);
      }
    }
    return docs;
  }

  fs::path dir_;
  std::unique_ptr<Tokenizer> tok_;
  std::vector<std::string> expected_;
};

}  // namespace

TEST(PrepareSplit, choose_val_documents) {
  EXPECT_EQ(choose_val_documents(0, 0.5, 1).size(), 0u);
  EXPECT_EQ(choose_val_documents(1, 0.5, 1), (std::vector<char>{0}));
  auto count = [](const std::vector<char>& v) { return std::count(v.begin(), v.end(), 1); };
  EXPECT_EQ(count(choose_val_documents(2, 0.005, 1)), 1);     // at least one
  EXPECT_EQ(count(choose_val_documents(3, 0.9, 1)), 2);       // at most all but one
  EXPECT_EQ(count(choose_val_documents(1000, 0.1, 1)), 100);
  EXPECT_EQ(count(choose_val_documents(1000, 0.0, 1)), 0);
  EXPECT_EQ(choose_val_documents(1000, 0.1, 7), choose_val_documents(1000, 0.1, 7));
  EXPECT_NE(choose_val_documents(1000, 0.1, 7), choose_val_documents(1000, 0.1, 8));
}

TEST_F(PrepareTest, manifest_counts_and_eot_separated_documents) {
  const PrepareResult r = prepare(config("out"));
  const auto& m = r.manifest;
  EXPECT_EQ(r.manifest_path, (dir_ / "out/tiny_manifest.json").string());
  EXPECT_EQ(nlohmann::ordered_json::parse(read_file(r.manifest_path)), m);
  // 3 matching non-empty text files + 4 JSONL records (one empty, skipped)
  EXPECT_EQ(m["documents"]["total"], 7);
  EXPECT_EQ(m["documents"]["empty_skipped"], 1);
  EXPECT_EQ(m["documents"]["empty_files_skipped"], 1);
  EXPECT_EQ(m["documents"]["symlinks_skipped"], 1);
  const auto& tr = m["splits"]["train"];
  const auto& va = m["splits"]["val"];
  EXPECT_EQ(tr["documents"].get<int>() + va["documents"].get<int>(), 6);
  EXPECT_GE(va["documents"].get<int>(), 1);
  ASSERT_EQ(m["sources"].size(), 2u);
  EXPECT_EQ(m["sources"][0]["type"], "directory");
  EXPECT_EQ(m["sources"][0]["files"], 3);
  EXPECT_EQ(m["sources"][1]["type"], "jsonl");
  EXPECT_EQ(m["sources"][1]["documents"], 4);
  EXPECT_EQ(m["sources"][1]["bytes"], fs::file_size(dir_ / "corpus.jsonl"));
  EXPECT_EQ(m["tokenizer"]["hash"], tok_->hash());
  EXPECT_EQ(m["tokenizer"]["eot_id"], 258);
  EXPECT_EQ(m["shard_format"]["version"], 1);
  EXPECT_EQ(m["split"]["seed"], 5);
  EXPECT_EQ(m["command"], "sparsek prepare (test)");

  // Shards listed = shards on disk, with token counts and sha256; val first.
  int64_t listed_tokens[2] = {0, 0};
  ASSERT_GE(m["shards"].size(), 2u);
  EXPECT_EQ(m["shards"][0]["split"], "val");
  for (const auto& s : m["shards"]) {
    const fs::path p = dir_ / "out" / s["file"].get<std::string>();
    EXPECT_EQ(Shard::open(p.string()).num_tokens(), s["tokens"].get<int64_t>());
    EXPECT_EQ(s["bytes"].get<uintmax_t>(), fs::file_size(p));
    Sha256 h;
    h.update(read_file(p));
    EXPECT_EQ(s["sha256"], h.hex_digest());
    listed_tokens[s["split"] == "val"] += s["tokens"].get<int64_t>();
  }
  const auto train_toks = split_tokens("out", "train"), val_toks = split_tokens("out", "val");
  EXPECT_EQ(tr["tokens"].get<int64_t>(), static_cast<int64_t>(train_toks.size()));
  EXPECT_EQ(va["tokens"].get<int64_t>(), static_cast<int64_t>(val_toks.size()));
  EXPECT_EQ(listed_tokens[0], tr["tokens"].get<int64_t>());
  EXPECT_EQ(listed_tokens[1], va["tokens"].get<int64_t>());

  // Each split: [eot] doc [eot] doc ... in input order; together exactly the expected documents,
  // and the literal "<|endoftext|>" inside a document stays text (not the special token).
  const auto train_docs = documents(train_toks), val_docs = documents(val_toks);
  EXPECT_EQ(static_cast<int64_t>(train_docs.size()), tr["documents"].get<int64_t>());
  EXPECT_EQ(static_cast<int64_t>(val_docs.size()), va["documents"].get<int64_t>());
  std::vector<std::string> merged;
  size_t ti = 0, vi = 0;
  for (const auto& e : expected_) {
    if (ti < train_docs.size() && train_docs[ti] == e) merged.push_back(train_docs[ti++]);
    else if (vi < val_docs.size() && val_docs[vi] == e) merged.push_back(val_docs[vi++]);
  }
  EXPECT_EQ(merged, expected_) << "documents missing, altered or out of order";
  int64_t text_bytes = 0;
  for (const auto& e : expected_) text_bytes += static_cast<int64_t>(e.size());
  EXPECT_EQ(tr["text_bytes"].get<int64_t>() + va["text_bytes"].get<int64_t>(), text_bytes);
}

TEST_F(PrepareTest, deterministic_across_thread_counts_and_shard_boundaries) {
  // Enough documents for several chunks (1024 documents each) and many small shards.
  std::string jsonl;
  for (int i = 0; i < 2500; ++i)
    jsonl += nlohmann::json{{"body", "document " + std::to_string(i) + std::string(i % 7, 'x') + " the end"}}.dump() + "\n";
  write_file(dir_ / "many.jsonl", jsonl);
  std::map<int, nlohmann::ordered_json> manifests;
  for (int threads : {1, 4}) {
    PrepareConfig c = config("out" + std::to_string(threads));
    c.inputs = {(dir_ / "docs").string(), (dir_ / "many.jsonl").string(), (dir_ / "docs/a.txt").string()};
    c.jsonl_field = "body";
    c.threads = threads;
    c.shard_tokens = 5000;
    c.val_fraction = 0.05;
    manifests[threads] = prepare(c).manifest;
  }
  auto a = manifests[1], b = manifests[4];
  ASSERT_GT(a["shards"].size(), 6u);
  EXPECT_EQ(a["run"]["threads"], 1);
  EXPECT_EQ(b["run"]["threads"], 4);
  for (auto* m : {&a, &b}) m->erase("run");
  EXPECT_EQ(a, b);  // same shards (sha256), counts and split
  for (const auto& s : a["shards"]) {
    const std::string f = s["file"];
    EXPECT_EQ(read_file(dir_ / "out1" / f), read_file(dir_ / "out4" / f)) << f;
  }
  EXPECT_EQ(a["splits"]["val"]["documents"], 125);  // round(0.05 * (3 + 2500 + 1))
  // Every shard but the last of each split holds exactly shard_tokens tokens.
  for (const char* split : {"train", "val"}) {
    const auto paths = find_shards((dir_ / "out1").string(), "tiny", split);
    for (size_t i = 0; i + 1 < paths.size(); ++i) EXPECT_EQ(Shard::open(paths[i]).num_tokens(), 5000);
    EXPECT_LE(Shard::open(paths.back()).num_tokens(), 5000);
  }
  // The loader reads what prepare wrote.
  DataLoaderOptions o;
  o.batch_size = 4;
  o.seq_len = 32;
  DataLoader dl(find_shards((dir_ / "out1").string(), "tiny", "train"), DataLoader::Mode::Train, o);
  EXPECT_EQ(dl.num_tokens(), a["splits"]["train"]["tokens"].get<int64_t>());
  EXPECT_EQ(dl.next()->inputs.shape(), (Shape{4, 32}));
}

TEST_F(PrepareTest, rerun_removes_stale_shards) {
  PrepareConfig c = config("out");
  c.shard_tokens = 20;
  const auto first = prepare(c).manifest;
  c.shard_tokens = 1000;
  const auto second = prepare(c).manifest;
  ASSERT_GT(first["shards"].size(), second["shards"].size());
  EXPECT_EQ(second["run"]["stale_shards_removed"].get<size_t>(), first["shards"].size() - second["shards"].size());
  EXPECT_EQ(find_shards((dir_ / "out").string(), "tiny", "train").size(), 1u);
  EXPECT_EQ(find_shards((dir_ / "out").string(), "tiny", "val").size(), 1u);
}

TEST_F(PrepareTest, failed_run_leaves_previous_output) {
  PrepareConfig c = config("out");
  c.shard_tokens = 20;
  prepare(c);
  std::map<std::string, std::string> before;
  for (const auto& e : fs::directory_iterator(dir_ / "out")) before[e.path().filename()] = read_file(e.path());
  // 3000 good records (several chunks written into shards) and then a bad line.
  std::string jsonl;
  for (int i = 0; i < 3000; ++i) jsonl += "{\"text\": \"record " + std::to_string(i) + "\"}\n";
  write_file(dir_ / "late_error.jsonl", jsonl + "{oops}\n");
  c.inputs.push_back((dir_ / "late_error.jsonl").string());
  c.threads = 3;
  c.shard_tokens = 500;
  const std::string msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("late_error.jsonl:3001: invalid JSON"), std::string::npos) << msg;
  std::map<std::string, std::string> after;
  for (const auto& e : fs::directory_iterator(dir_ / "out")) after[e.path().filename()] = read_file(e.path());
  EXPECT_EQ(before.size(), after.size()) << "no staging directory or temporaries left";
  EXPECT_TRUE(before == after) << "the earlier run's shards and manifest are unchanged";
}

TEST_F(PrepareTest, errors_name_the_problem) {
  PrepareConfig c = config("out");
  c.inputs = {(dir_ / "nope").string()};
  std::string msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("input " + (dir_ / "nope").string() + " does not exist"), std::string::npos) << msg;

  c.inputs = {};
  msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("no inputs"), std::string::npos) << msg;

  c.inputs = {(dir_ / "docs").string()};
  c.globs = {"*.rst"};
  msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("empty input: directory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'*.rst'"), std::string::npos) << msg;

  c.globs = {};
  c.inputs = {(dir_ / "docs/empty.txt").string()};
  msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("empty input"), std::string::npos) << msg;

  write_file(dir_ / "bad.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": \"broken\"\n");
  c.inputs = {(dir_ / "bad.jsonl").string()};
  msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find((dir_ / "bad.jsonl").string() + ":3: invalid JSON"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;

  write_file(dir_ / "nofield.jsonl", "{\"content\": \"x\"}\n");
  c.inputs = {(dir_ / "nofield.jsonl").string()};
  msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("nofield.jsonl:1: no field 'text'"), std::string::npos) << msg;

  c.inputs = {(dir_ / "docs").string()};
  c.out_dir = (dir_ / "docs/a.txt/out").string();  // below a regular file: cannot be created
  msg = error_of([&] { prepare(c, *tok_); });
  EXPECT_NE(msg.find("cannot create output directory"), std::string::npos) << msg;
  // The failed JSONL runs left nothing in the output directory (no shards, no temporaries).
  EXPECT_TRUE(fs::is_empty(dir_ / "out"));
}

TEST_F(PrepareTest, cli_exit_status_2) {
  // build/tests/test_data -> build/sparsek
  const fs::path exe = fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "sparsek";
  if (!fs::exists(exe)) GTEST_SKIP() << exe << " is not built (ninja sparsek); the library errors are tested above";
  write_file(dir_ / "bad.jsonl", "{\"text\": 1}\n");
  const std::string base = exe.string() + " prepare --no-progress --tokenizer " + (dir_ / "tok.json").string() +
                           " --name t --out ";
  const std::string out = (dir_ / "out").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {base + out + " " + (dir_ / "nope").string(), "does not exist"},
      {base + out, "no inputs"},
      {base + out + " --glob '*.rst' --glob '*.py' " + (dir_ / "docs/sub/c.txt").string() + " " +
           (dir_ / "docs").string() + " --threads 2", "empty input: directory"},
      {base + (dir_ / "docs/a.txt/x").string() + " " + (dir_ / "docs").string(), "cannot create output directory"},
      {base + out + " " + (dir_ / "bad.jsonl").string(), "bad.jsonl:1: field 'text' is number"}};
  for (const auto& [cmd, want] : cases) {
    const std::string log = (dir_ / "cli.log").string();
    const int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
    ASSERT_TRUE(WIFEXITED(rc)) << cmd;
    EXPECT_EQ(WEXITSTATUS(rc), 2) << cmd << "\n" << read_file(log);
    const std::string text = read_file(log);
    EXPECT_NE(text.find(want), std::string::npos) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << "one line: " << text;
  }
  const int ok = std::system((base + out + " " + (dir_ / "docs").string() + " > /dev/null 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(ok), 0);
  EXPECT_TRUE(fs::exists(dir_ / "out/t_manifest.json"));
}
