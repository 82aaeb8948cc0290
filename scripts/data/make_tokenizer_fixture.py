#!/usr/bin/env python3
"""Fixtures for the tokenizer tests (tests/data/test_tokenizer*.cpp).

  make_tokenizer_fixture.py parity [--gpt2 DIR] [--tiny JSON] [--out OUT.json] [--engine E]
                                   [--sample SAMPLE_DIR] FILE...
      Encodes each FILE with Hugging Face `tokenizers` built from the GPT-2 files in DIR
      (encoder.json + vocab.bpe, ByteLevel pre-tokenizer, add_prefix_space False,
      "<|endoftext|>" added as a special token) and with the tiny tokenizer.json, and writes
      per file: sha256, byte length, token count, sha256 of the ids as little-endian uint32,
      the first 200 ids, and the first 8 hex digits of the sha256 of each block of 1024 ids
      (to locate a difference). The C++ parity test (tests/data/test_tokenizer_parity.cpp)
      recomputes these with sparsek's tokenizer, encode(text, allow_special=true).
      --engine hf (default): tokenizers; the GPT-2 ids are also checked against tiktoken built
        from the same ranks (encoder.json) and the GPT-2 pattern, and the script fails on any
        difference. Both must be importable (the GPU machine has them).
      --engine reference: this file's pure-Python implementation of the same rules (OpenAI's
        encoder.py algorithm, `tokenizers`' added-token and NFC handling; needs the `regex`
        module). For machines without `tokenizers`; the fixture records which engine made it.
      Paths are written relative to the repository root (run from anywhere).
  make_tokenizer_fixture.py tiny --out tests/data/fixtures/tiny_tokenizer.json
      Trains the tiny byte-level BPE fixture (256 byte tokens + 160 merges on a built-in text,
      NFC normalizer, "<|endoftext|>" special, "café" a non-special normalized added token).
  make_tokenizer_fixture.py torture --out tests/data/fixtures/tokenizer_torture.txt
      Writes the torture text (hand-written lines plus seeded random mixes; valid UTF-8).
"""
import argparse
import hashlib
import json
import os
import random
import struct
import sys
import unicodedata

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def rel(path):
    return os.path.relpath(os.path.abspath(path), REPO)


# ---- pure-Python reference (the rules sparsek implements, independently written) ---------------

class Reference:
    """vocab: str -> id, merges: list of (a, b), added: list of dicts (tokenizer.json form)."""

    def __init__(self, vocab, merges, added, nfc):
        import regex
        self.pat = regex.compile(GPT2_PATTERN)
        self.vocab = vocab
        self.ranks = {}
        for r, (a, b) in enumerate(merges):
            self.ranks[(vocab[a], vocab[b])] = (r, vocab[a + b])
        b2u = bytes_to_unicode()
        self.byte_id = [vocab[b2u[b]] for b in range(256)]
        self.nfc = nfc
        self.added = added
        self.cache = {}

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        syms = [self.byte_id[b] for b in piece]
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                m = self.ranks.get((syms[i], syms[i + 1]))
                if m is not None and (best is None or m[0] < best[0]):
                    best = (m[0], i, m[1])
            if best is None:
                break
            _, i, new = best
            syms[i:i + 2] = [new]
        self.cache[piece] = syms
        return syms

    def ordinary(self, text, out):
        for piece in self.pat.findall(text):
            out.extend(self.bpe(piece.encode("utf-8")))

    def split_added(self, text, tokens, gap, out):
        """Leftmost-longest match of tokens (list of (match_string, token dict)); lstrip/rstrip."""
        start = pos = 0
        while pos < len(text):
            best = None
            for s, t in tokens:
                if text.startswith(s, pos) and (best is None or len(s) > len(best[0])):
                    best = (s, t)
            if best is None:
                pos += 1
                continue
            ms, me = pos, pos + len(best[0])
            if best[1].get("lstrip"):
                while ms > start and text[ms - 1].isspace() and text[ms - 1] not in "\x1c\x1d\x1e\x1f":
                    ms -= 1
            if best[1].get("rstrip"):
                while me < len(text) and text[me].isspace() and text[me] not in "\x1c\x1d\x1e\x1f":
                    me += 1
            if ms > start:
                gap(text[start:ms])
            out.append(best[1]["id"])
            start = pos = me
        if start < len(text):
            gap(text[start:])

    def encode(self, text, allow_special=True):
        out = []
        usable = [t for t in self.added if allow_special or not t.get("special")]
        raw = [(t["content"], t) for t in usable if not t.get("normalized", not t.get("special"))]
        norm = [(unicodedata.normalize("NFC", t["content"]) if self.nfc else t["content"], t)
                for t in usable if t.get("normalized", not t.get("special"))]

        def normalized_piece(s):
            self.split_added(s, norm, lambda g: self.ordinary(g, out), out)

        def raw_piece(s):
            normalized_piece(unicodedata.normalize("NFC", s) if self.nfc else s)

        self.split_added(text, raw, raw_piece, out)
        return out


def load_gpt2_json(gpt2_dir):
    vocab = json.load(open(os.path.join(gpt2_dir, "encoder.json"), encoding="utf-8"))
    merges = []
    for line in open(os.path.join(gpt2_dir, "vocab.bpe"), encoding="utf-8").read().split("\n"):
        if not line or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return vocab, merges


def reference_gpt2(gpt2_dir):
    vocab, merges = load_gpt2_json(gpt2_dir)
    eot = {"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "special": True, "normalized": False}
    return Reference(vocab, merges, [eot], nfc=False)


def reference_hf_json(path):
    d = json.load(open(path, encoding="utf-8"))
    m = d["model"]
    merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in m["merges"]]
    norm = d.get("normalizer")
    nfc = bool(norm) and (norm["type"] == "NFC" or any(n["type"] == "NFC" for n in norm.get("normalizers", [])))
    return Reference(m["vocab"], merges, d.get("added_tokens") or [], nfc)


# ---- Hugging Face tokenizers / tiktoken --------------------------------------------------------

def hf_gpt2(gpt2_dir):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    bpe = models.BPE.from_file(os.path.join(gpt2_dir, "encoder.json"), os.path.join(gpt2_dir, "vocab.bpe"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    assert tok.token_to_id("<|endoftext|>") == 50256
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def tiktoken_gpt2(gpt2_dir):
    import tiktoken
    vocab = json.load(open(os.path.join(gpt2_dir, "encoder.json"), encoding="utf-8"))
    u2b = {u: b for b, u in bytes_to_unicode().items()}
    ranks = {bytes(u2b[c] for c in tok): i for tok, i in vocab.items() if tok != "<|endoftext|>"}
    enc = tiktoken.Encoding("gpt2-from-encoder-json", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": vocab["<|endoftext|>"]})
    return lambda text: enc.encode(text, allowed_special="all")


def hf_json(path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    return lambda text: tok.encode(text, add_special_tokens=False).ids


BLOCK = 1024  # ids per block digest (locates the first difference to within a block)


def file_record(path, ids, data):
    blocks = [hashlib.sha256(struct.pack("<%dI" % len(ids[i:i + BLOCK]), *ids[i:i + BLOCK])).hexdigest()[:8]
              for i in range(0, len(ids), BLOCK)]
    return {
        "path": rel(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "tokens": len(ids),
        "ids_sha256": hashlib.sha256(struct.pack("<%dI" % len(ids), *ids)).hexdigest(),
        "first_ids": ids[:200],
        "block_sha256_8": blocks,
    }


def sample_files(sample_dir):
    """The files of a make_parity_sample.sh folder, in MANIFEST.sha256 order."""
    names = [line.split("  ", 1)[1].rstrip("\n")
             for line in open(os.path.join(sample_dir, "MANIFEST.sha256"), encoding="utf-8") if line.strip()]
    return [os.path.join(sample_dir, n) for n in names]


def cmd_parity(args):
    files = list(args.files) + (sample_files(args.sample) if args.sample else [])
    if not files:
        sys.exit("parity: no files given (FILE... and/or --sample DIR)")
    engine_desc = {}
    if args.engine == "hf":
        import tokenizers
        gpt2_enc, tiny_enc = hf_gpt2(args.gpt2), hf_json(args.tiny)
        tik = tiktoken_gpt2(args.gpt2)
        import tiktoken
        engine_desc = {"engine": "tokenizers %s" % tokenizers.__version__,
                       "cross_check": "tiktoken %s (same ranks, GPT-2 pattern): equal on every file" % tiktoken.__version__}
    else:
        ref_g, ref_t = reference_gpt2(args.gpt2), reference_hf_json(args.tiny)
        gpt2_enc, tiny_enc, tik = ref_g.encode, ref_t.encode, None
        engine_desc = {"engine": "reference (pure Python in make_tokenizer_fixture.py; regenerate with --engine hf)"}
    out = {"generator": "scripts/data/make_tokenizer_fixture.py parity", **engine_desc,
           "allow_special": True, "tokenizers": []}
    for name, kind, path, enc in (("gpt2", "gpt2_files", args.gpt2, gpt2_enc), ("tiny", "hf_json", args.tiny, tiny_enc)):
        recs = []
        total = 0
        for f in files:
            data = open(f, "rb").read()
            text = data.decode("utf-8")
            ids = enc(text)
            if name == "gpt2" and tik is not None:
                ids2 = tik(text)
                if ids2 != ids:
                    k = next((i for i in range(min(len(ids), len(ids2))) if ids[i] != ids2[i]), min(len(ids), len(ids2)))
                    sys.exit("tokenizers and tiktoken differ on %s at token %d: %s vs %s" % (f, k, ids[k:k + 8], ids2[k:k + 8]))
            recs.append(file_record(f, ids, data))
            total += len(data)
        out["tokenizers"].append({"name": name, "kind": kind, "path": rel(path), "total_bytes": total, "files": recs})
        print("%s: %d files, %d bytes, %d tokens" % (name, len(recs), total, sum(r["tokens"] for r in recs)))
    # One line per file record keeps the fixture small and its diffs readable.
    with open(args.out, "w", encoding="utf-8") as fo:
        head = {k: v for k, v in out.items() if k != "tokenizers"}
        fo.write(json.dumps(head, indent=1)[:-2] + ',\n "tokenizers": [\n')
        for ti, t in enumerate(out["tokenizers"]):
            th = {k: v for k, v in t.items() if k != "files"}
            fo.write("  " + json.dumps(th)[:-1] + ', "files": [\n')
            fo.write(",\n".join("   " + json.dumps(r, separators=(",", ":")) for r in t["files"]))
            fo.write("\n  ]}" + ("," if ti + 1 < len(out["tokenizers"]) else "") + "\n")
        fo.write(" ]\n}\n")
    json.load(open(args.out, encoding="utf-8"))  # well-formed
    print("wrote", args.out)


# ---- tiny tokenizer ----------------------------------------------------------------------------

TINY_TEXT = """The tokenizer splits text into pieces, then merges bytes into tokens. It's a byte-level
BPE: every byte has a token, so any text can be encoded and decoded again. They'll test it; we've
seen that the tests don't lie. Numbers like 12345 and 2024 are split, too. Café, naïve, über,
Straße,日本語, русский текст, العربية. The end of a document is marked by a special token.
    def encode(self, text):  # indentation and code
        return [self.vocab[t] for t in text.split()]
"""


def cmd_tiny(args):
    import regex
    pat = regex.compile(GPT2_PATTERN)
    b2u = bytes_to_unicode()
    vocab = {}
    for b in b2u:  # bytes_to_unicode order: the GPT-2 byte tokens' ids 0..255
        vocab[b2u[b]] = len(vocab)
    words = {}
    for piece in pat.findall(TINY_TEXT * 3):
        w = tuple(b2u[b] for b in piece.encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    merges = []
    while len(merges) < 160:
        counts = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        if best[0] + best[1] not in vocab:
            vocab[best[0] + best[1]] = len(vocab)
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    n = len(vocab)
    added = [
        {"id": n, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": n + 1, "content": "café", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
    ]
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT2_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }
    with open(args.out, "w", encoding="utf-8") as fo:
        json.dump(tj, fo, ensure_ascii=False, indent=1)
        fo.write("\n")
    print("wrote %s: %d tokens, %d merges, 2 added" % (args.out, n, len(merges)))


# ---- torture text ------------------------------------------------------------------------------

TORTURE_LINES = [
    "Hello world! Hello, World. HELLO WORLD? hello_world hello-world",
    "I'll've done it. You'd've said so. She's here; they're there; we've been; I'm sure; he'd go.",
    "'S 'T 'RE 'VE 'M 'LL 'D — uppercase contractions are not contractions.",
    "'s't're've'm'll'd ''s '''' 'x 'sa 'lla 'dd ' s ' ll",
    "can't won't shan't y'all'd've o'clock rock'n'roll",
    "curly: it\u2019s, it\u2018s, they\u2019ll \u201cquoted\u201d \u00abguillemets\u00bb",
    "a   b    c\t\td \t e\n\nf\n\n\ng  \n  h",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\there\tand\t\tthere\t",
    "CR LF\r\nline\rcarriage\r\n\r\nreturn",
    "no-break\u00a0space and\u00a0\u00a0two, ideographic\u3000space\u3000\u3000here, em\u2003space",
    "next line\u0085char, line\u2028separator, paragraph\u2029separator, vt\u000bff\u000cend",
    "zero width\u200bspace, BOM\ufeffhere, joiner\u200dnon\u200cjoiner, narrow\u202fnbsp, math\u205fspace, ogham\u1680space",
    "unit separators \x1c\x1d\x1e\x1f are not White_Space; nor is \x00 or \x7f or \x01.",
    "12345 3.14159 1,000,000 -42 +7 0x1F 1e-9 2024-01-31 12:34:56 007",
    "Arabic-Indic \u0661\u0662\u0663, Devanagari \u0968\u0966\u0968\u096a, fullwidth \uff11\uff12\uff13, x\u00b2+y\u00b3, \u00bd \u2153 \u2167 \u216b \u2460\u2461",
    "h\u00e9llo w\u00f6rld na\u00efve \u00fcber Stra\u00dfe \u0141\u00f3d\u017a \u0130stanbul \u0131",
    "decomposed: he\u0301llo wo\u0308rld cafe\u0301 cafe\u0301s n\u0303 a\u030a A\u030a \u212b \u2126 \u1100\u1161\u11a8",
    "caf\u00e9 and cafe\u0301 and CAF\u00c9 and caf\u00e9s",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002\u4e2d\u6587\u5b57\u7b26\uff0c\u6807\u70b9\u3002 \ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442, \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac, \u05e2\u05d1\u05e8\u05d9\u05ea, \u0627\u0644\u0639\u0631\u0628\u064a\u0629, \u0939\u093f\u0928\u094d\u0926\u0940, \u0e44\u0e17\u0e22, \u1403\u14c4\u1483\u144e\u1450\u1466",
    "emoji: \U0001F600\U0001F601 \U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5 1\ufe0f\u20e3 \u2764\ufe0f \U0001F3F3\ufe0f\u200d\U0001F308",
    "astral letters \U0001D518\U0001D52B\U0001D526 \U00010330\U00010331 cuneiform \U00012000 private \ue000\U000F0000 replacement \ufffd",
    "noncharacters \ufdd0 \ufffe \uffff \U0001FFFE",
    "CJK compatibility \uf900\uf901 \u2f00 and halfwidth \uff76\uff9e",
    "<|endoftext|>after special<|endoftext|><|endoftext|> <|endoftext|>\n<|endoftext",
    "<|endoftext|> in the middle of a word: foo<|endoftext|>bar",
    "    def encode(self, text: str) -> list[int]:\n        return [self.vocab[t] for t in text.split()]  # comment",
    "\tif (x != 0 && y->z[3] >= 4) { return a << 2 | b >> 1; }  // C\n#include <stdio.h>",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "https://example.com/path?query=1&b=2#frag user@example.org <a href=\"x\">link</a>",
    "SELECT * FROM t WHERE a = 'it''s' AND b LIKE '%x%';",
    "mixed\u65e5\u672cEnglish\u0440\u0443\u0441123\u0639\u0631\u0628abc",
    "punctuation!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} ||| \\\\ /// ~~~ ```",
    "  \n  \n\t\n \u00a0\n\u3000 x",
]


def cmd_torture(args):
    rng = random.Random(20240531)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3 +
            list(" " * 30) + list("\t\n\r\u00a0\u3000\u2003\u0085\u2028\u000b\u000c") +
            list("'\"!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`") + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"] +
            list("\u00e9\u00df\u03a9\u0436\u05d0\u0639\u4e2d\u65e5\ud55c\u0e44\u0939\u093f\u0301\u0308\u0661\u0968\uff11\u00b2\u00bd\u216b") +
            ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7",
             "\ufe0f", "\u200b", "\u200d", "\U0001D518", "\ufffd", "<|endoftext|>", "caf\u00e9", "cafe\u0301", "\u212b", "\u1100\u1161"])
    lines = list(TORTURE_LINES)
    lines.append("long space run:" + " " * 2000 + "end")
    lines.append("long letter run: " + "".join(rng.choice("abcdefghij") for _ in range(400)))
    lines.append("long punctuation run: " + "=-" * 300)
    lines.append("long digit run: " + "".join(rng.choice("0123456789") for _ in range(300)))
    lines.append("long newline run:" + "\n" * 100 + "end")
    for _ in range(150):
        lines.append("".join(rng.choice(pool) for _ in range(rng.randint(20, 160))))
    text = "\n".join(lines) + "\n"
    with open(args.out, "w", encoding="utf-8", newline="") as fo:
        fo.write(text)
    print("wrote %s: %d bytes" % (args.out, len(text.encode("utf-8"))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--gpt2", default=os.path.join(REPO, "data/tokenizers/gpt2"))
    p.add_argument("--tiny", default=os.path.join(REPO, "tests/data/fixtures/tiny_tokenizer.json"))
    p.add_argument("--out", default=os.path.join(REPO, "tests/data/fixtures/gpt2_parity.json"))
    p.add_argument("--engine", choices=["hf", "reference"], default="hf")
    p.add_argument("--sample", help="a make_parity_sample.sh folder: its files are appended in MANIFEST order")
    p.add_argument("files", nargs="*")
    p.set_defaults(fn=cmd_parity)
    t = sub.add_parser("tiny")
    t.add_argument("--out", default=os.path.join(REPO, "tests/data/fixtures/tiny_tokenizer.json"))
    t.set_defaults(fn=cmd_tiny)
    r = sub.add_parser("torture")
    r.add_argument("--out", default=os.path.join(REPO, "tests/data/fixtures/tokenizer_torture.txt"))
    r.set_defaults(fn=cmd_torture)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
