#!/usr/bin/env python3
"""Peer throughput for `sparsek bench tokenizer`: Hugging Face `tokenizers` and tiktoken, one
thread each, on the same text and the same GPT-2 ranks.

Text: the concatenation of the sample's files in MANIFEST.sha256 order (default sample
data/corpora/python-docs-sample, made by scripts/data/make_parity_sample.sh); sparsek's
bench_tokenizer_mbps() is given the same concatenation. Tokenizers: both built from
encoder.json + vocab.bpe in --gpt2 (as in scripts/data/make_tokenizer_fixture.py): HF
`tokenizers.Tokenizer(models.BPE.from_file(...))` with the ByteLevel pre-tokenizer, and
`tiktoken.Encoding` with the GPT-2 pattern and ranks from encoder.json. Timing: like sparsek's,
the best of repeated single-call encodes of the whole text over at least --seconds (at least 3
calls); MB = 1e6 bytes. One thread: RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false are set
before the import, encode() (not encode_batch) for HF, encode_ordinary() for tiktoken. The ids of
the two are compared (they must be equal). Writes JSON (--out) and prints a table.
Runs on the GPU machine's CPUs (it has both packages; no network needed).
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
import make_tokenizer_fixture as fx  # noqa: E402

REPO = fx.REPO


def sample_text(sample_dir):
    return b"".join(open(f, "rb").read() for f in fx.sample_files(sample_dir))


def best_mbps(fn, text, nbytes, seconds):
    best, total, reps = 0.0, 0.0, 0
    while reps < 3 or total < seconds:
        t0 = time.perf_counter()
        fn(text)
        dt = time.perf_counter() - t0
        total += dt
        reps += 1
        best = max(best, nbytes / dt / 1e6)
    return best, reps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpt2", default=os.path.join(REPO, "data/tokenizers/gpt2"))
    ap.add_argument("--sample", default=os.path.join(REPO, "data/corpora/python-docs-sample"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", default="tokenizer_peer.json")
    args = ap.parse_args()

    data = sample_text(args.sample)
    text = data.decode("utf-8")
    import tiktoken
    import tokenizers
    hf = fx.hf_gpt2(args.gpt2)
    vocab = json.load(open(os.path.join(args.gpt2, "encoder.json"), encoding="utf-8"))
    u2b = {u: b for b, u in fx.bytes_to_unicode().items()}
    ranks = {bytes(u2b[c] for c in t): i for t, i in vocab.items() if t != "<|endoftext|>"}
    enc = tiktoken.Encoding("gpt2-from-encoder-json", pat_str=fx.GPT2_PATTERN, mergeable_ranks=ranks,
                      special_tokens={"<|endoftext|>": 50256})
    ids_hf, ids_tk = hf(text), enc.encode_ordinary(text)
    if ids_hf != ids_tk:
        sys.exit("tokenizers and tiktoken disagree on the sample")
    results = {}
    results["tokenizers"] = best_mbps(hf, text, len(data), args.seconds)
    results["tiktoken"] = best_mbps(enc.encode_ordinary, text, len(data), args.seconds)
    out = {
        "sample": os.path.relpath(args.sample, REPO), "bytes": len(data), "tokens": len(ids_hf),
        "ids_sha256": hashlib.sha256(struct.pack("<%dI" % len(ids_hf), *ids_hf)).hexdigest(),
        "threads": 1, "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "peers": {k: {"mbps": round(v[0], 2), "calls": v[1]} for k, v in results.items()},
        "versions": {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__,
                     "python": platform.python_version()},
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("sample: %d bytes, %d tokens (ids sha256 %s)" % (len(data), len(ids_hf), out["ids_sha256"]))
    for k, v in out["peers"].items():
        print("%-12s %8.2f MB/s (1 thread, best of %d calls)" % (k, v["mbps"], v["calls"]))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
