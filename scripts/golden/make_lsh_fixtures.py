#!/usr/bin/env python3
"""Hugging Face LSHSelfAttention fixtures for sparsek's `lsh` kind (docs/LSH.md).

Runs transformers' LSHSelfAttention (decoder mode, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
no dropout) on CPU fp32 with injected rotations (torch.randn is patched while the module hashes, so
the rotations are part of the fixture), random projection weights and random hidden states, then the
backward of sum(out * grad_out). Each fixture is one JSON file:
  config: {batch, T, hidden, heads, head_dim, n_hashes, n_buckets, chunk, transformers}
  x (B, T, C), w_qk (H*D, C), w_v (H*D, C), rotations (H, D, n_hashes, n_buckets/2),
  grad_out (B, T, H*D), out (B, T, H*D), grad_x, grad_w_qk, grad_w_v (their inputs' shapes),
  buckets (B, H, n_hashes, T) with Hugging Face's round offsets r*n_buckets (null when T <= chunk)
all flat lists, row-major. Read by tests/attention/lsh/test_lsh_hf_parity.cpp.

  python3 scripts/golden/make_lsh_fixtures.py OUT_DIR            small fixtures -> OUT_DIR/lsh_hf_*.json
  python3 scripts/golden/make_lsh_fixtures.py OUT_DIR --sweep    also OUT_DIR/sweep/lsh_hf_*.json for
                                                                  T {256,1024,4096} x n_hashes {1,2,4} x chunk {32,64,128}
Then: SPARSEK_LSH_FIXTURE_DIR=OUT_DIR/sweep build/tests/test_attention_lsh --gtest_filter='LshHfParity.sweep*'
(writes the table to OUT_DIR/sweep/lsh_parity.md). Needs PyTorch and transformers; no network.
"""
import argparse
import json
import os
import sys

import torch

try:
    import transformers
    from transformers import ReformerConfig
    from transformers.models.reformer.modeling_reformer import LSHSelfAttention
except ImportError as e:  # Reformer may be missing from a transformers build
    sys.exit(f"make_lsh_fixtures: cannot import transformers' Reformer LSHSelfAttention: {e}")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def make_fixture(T, n_hashes, chunk, n_buckets, hidden=8, heads=2, batch=1, seed=0):
    D = hidden // heads
    g = torch.Generator().manual_seed(seed)
    cfg = ReformerConfig(
        hidden_size=hidden, num_attention_heads=heads, attention_head_size=D, num_hashes=n_hashes,
        num_buckets=n_buckets, lsh_attn_chunk_length=chunk, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
        is_decoder=True, lsh_attention_probs_dropout_prob=0.0, hash_seed=None, attn_layers=["lsh"],
        max_position_embeddings=max(T, 4096), axial_pos_embds=False)
    attn = LSHSelfAttention(cfg).to(torch.float32)
    attn.train(False)
    with torch.no_grad():
        attn.query_key.weight.copy_(torch.randn(heads * D, hidden, generator=g) / hidden ** 0.5)
        attn.value.weight.copy_(torch.randn(heads * D, hidden, generator=g) / hidden ** 0.5)
    rotations = torch.randn(heads, D, n_hashes, n_buckets // 2, generator=g)
    x = torch.randn(batch, T, hidden, generator=g).requires_grad_()
    grad_out = torch.randn(batch, T, heads * D, generator=g)

    real_randn, calls = torch.randn, []

    def injected_randn(*shape, **kw):  # the module's only torch.randn call is its rotations
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        if shape == tuple(rotations.shape):
            calls.append(shape)
            return rotations.clone().to(dtype=kw.get("dtype") or torch.float32, device=kw.get("device") or "cpu")
        return real_randn(*shape, **kw)

    torch.randn = injected_randn
    try:
        res = attn(x)
    finally:
        torch.randn = real_randn
    out = res.hidden_states if hasattr(res, "hidden_states") else res[0]
    buckets = getattr(res, "buckets", None) if hasattr(res, "buckets") else (res[2] if len(res) > 2 else None)
    if T > chunk and len(calls) != 1:
        sys.exit(f"make_lsh_fixtures: expected one rotation draw of shape {tuple(rotations.shape)}, saw {calls}")
    (out * grad_out).sum().backward()
    return {
        "config": {"batch": batch, "T": T, "hidden": hidden, "heads": heads, "head_dim": D, "n_hashes": n_hashes,
                   "n_buckets": n_buckets, "chunk": chunk, "transformers": transformers.__version__,
                   "torch": torch.__version__},
        "x": flat(x), "w_qk": flat(attn.query_key.weight), "w_v": flat(attn.value.weight),
        "rotations": flat(rotations), "grad_out": flat(grad_out), "out": flat(out),
        "grad_x": flat(x.grad), "grad_w_qk": flat(attn.query_key.weight.grad), "grad_w_v": flat(attn.value.weight.grad),
        "buckets": [int(b) for b in buckets.reshape(-1).tolist()] if (T > chunk and buckets is not None) else None,
    }


def default_buckets(T, chunk):
    n, p = 2 * (T // chunk), 2
    while p * 2 <= n:
        p *= 2
    return p


def write(path, fx):
    with open(path, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--sweep", action="store_true", help="also the full sweep into OUT_DIR/sweep")
    a = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    os.makedirs(a.out_dir, exist_ok=True)
    # Small committed fixtures: (T, n_hashes, chunk, n_buckets); T <= chunk covers the standard path.
    for i, (T, R, chunk, nb) in enumerate([(16, 1, 4, 4), (16, 2, 4, 8), (40, 2, 8, 8), (40, 1, 8, 6), (8, 2, 8, 4)]):
        write(os.path.join(a.out_dir, f"lsh_hf_T{T}_h{R}_c{chunk}_b{nb}.json"), make_fixture(T, R, chunk, nb, seed=i))
    if a.sweep:
        sweep = os.path.join(a.out_dir, "sweep")
        os.makedirs(sweep, exist_ok=True)
        for T in (256, 1024, 4096):
            for R in (1, 2, 4):
                for chunk in (32, 64, 128):
                    nb = default_buckets(T, chunk)
                    write(os.path.join(sweep, f"lsh_hf_T{T}_h{R}_c{chunk}_b{nb}.json"),
                          make_fixture(T, R, chunk, nb, hidden=64, heads=2, seed=T + R + chunk))


if __name__ == "__main__":
    main()
