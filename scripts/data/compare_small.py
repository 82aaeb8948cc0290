#!/usr/bin/python3
"""The training data of the small comparison grid (configs/compare/small.json): data/compare_small/.

    scripts/data/compare_small.py [--docs-tokens N] [--code-tokens N] [--out data/compare_small]

From the prepared corpora (scripts/data/linux_docs.sh, scripts/data/linux_code.sh) it writes:
  linux_docs_train_000000.bin   the first N training tokens of linux_docs (default 8,000,000 of 16,376,438)
  linux_code_train_000000.bin   the first N training tokens of linux_code (default 10,000,000)
  linux_docs_val_000000.bin, linux_code_val_000000.bin   both validation splits whole (90,854 + 409,815)
18M training tokens (36 MB as uint16), so the data, the CUDA binary (~16 MB), the tokenizer and the
repository fit the device calls' 64 MiB carry limit, and a 16.8M-token run reads no token twice.
Prefixes are the first documents in each corpus' order (not a random sample); the validation
splits are random documents of the whole corpora (docs/COMPARE.md says what that means).
Shards are llm.c files (docs/data/shards-and-loader.md); a slice is a prefix of the first shard,
so it is byte-identical for identical corpora. Prints the counts and sha256 of what it wrote.
"""
import argparse
import glob
import hashlib
import os
import struct
import sys

MAGIC = 20240520


def read_header(path):
    with open(path, "rb") as f:
        h = struct.unpack("<256i", f.read(1024))
    if h[0] != MAGIC or h[1] not in (1, 2):
        sys.exit(f"compare_small: {path}: not a token shard (magic {h[0]}, version {h[1]})")
    return h[1], h[2]


def write_prefix(src, dst, count):
    version, n = read_header(src)
    count = min(count, n) if count >= 0 else n
    width = 2 if version == 1 else 4
    with open(src, "rb") as f:
        f.seek(1024)
        body = f.read(count * width)
    header = [MAGIC, version, count] + [0] * 253
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    digest = hashlib.sha256(open(dst, "rb").read()).hexdigest()
    print(f"{dst}: {count} tokens, sha256 {digest}")


def first(pattern):
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"compare_small: no shard matches {pattern} (run scripts/data/linux_docs.sh and linux_code.sh)")
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs-tokens", type=int, default=8_000_000)
    ap.add_argument("--code-tokens", type=int, default=10_000_000)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="data/compare_small")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    docs_train = first(f"{a.data}/linux_docs/linux_docs_train_*.bin")
    if len(docs_train) != 1:
        sys.exit(f"compare_small: expected one linux_docs training shard, found {len(docs_train)}")
    write_prefix(docs_train[0], f"{a.out}/linux_docs_train_000000.bin", a.docs_tokens)
    write_prefix(first(f"{a.data}/linux_code/linux_code_train_*.bin")[0], f"{a.out}/linux_code_train_000000.bin",
                 a.code_tokens)
    for name in ("linux_docs", "linux_code"):
        vals = first(f"{a.data}/{name}/{name}_val_*.bin")
        if len(vals) != 1:
            sys.exit(f"compare_small: expected one {name} validation shard, found {len(vals)}")
        write_prefix(vals[0], f"{a.out}/{name}_val_000000.bin", -1)


if __name__ == "__main__":
    main()
