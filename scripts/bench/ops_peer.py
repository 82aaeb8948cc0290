#!/usr/bin/env python3
"""PyTorch eager peer of `sparsek bench ops`: the same ops, shapes, dtypes and timing method.

LayerNorm, GELU (tanh) and cross-entropy through torch.nn.functional with autograd (forward, and
forward+backward with a given output gradient); AdamW as torch.optim.AdamW(fused=True) over the
GPT-2 124M parameter shapes (and over one flat 124M tensor; the faster is the peer). Timing: the
median of CUDA-event timed runs, the L2 cache flushed before each (a 512 MiB write), after
warm-up. Writes JSON (--out). Runs on the GPU machine, which has PyTorch.
"""
import argparse
import json

import torch
import torch.nn.functional as F


def median_ms(fn, flush, warmup=3, iters=20):
    for _ in range(warmup):
        fn()
    times = []
    for i in range(iters):
        flush.fill_(i & 0xFF)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def gpt2_shapes(vocab=50304, n_layer=12, C=768, T=1024):
    shapes = [(vocab, C), (T, C)]
    for _ in range(n_layer):
        shapes += [(C,), (C,), (3 * C, C), (3 * C,), (C, C), (C,), (C,), (C,), (4 * C, C), (4 * C,), (C, 4 * C), (C,)]
    return shapes + [(C,), (C,)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_ops_torch.json")
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    dev = "cuda"
    torch.manual_seed(2026)
    flush = torch.empty(256 << 20, dtype=torch.int16, device=dev)
    results = []

    def record(op, phase, shape, ms, nbytes):
        results.append({"op": op, "phase": phase, "shape": shape, "ms": ms, "bytes": nbytes,
                        "GBps": nbytes / (ms * 1e-3) / 1e9})
        print(f"{op:<14} {phase:<9} {shape:<28} {ms:8.3f} ms {nbytes / (ms * 1e-3) / 1e9:8.1f} GB/s", flush=True)

    t = lambda fn: median_ms(fn, flush, iters=args.iters)
    n = 1 << 31
    src = torch.ones(n // 2, dtype=torch.int16, device=dev)
    dst = torch.empty_like(src)
    record("copy", "d2d", "2 GiB", t(lambda: dst.copy_(src)), 2.0 * n)
    del src, dst

    N, C, H, Vp = 32768, 768, 3072, 50304
    bf = torch.bfloat16
    # LayerNorm
    x = torch.randn(N, C, device=dev, dtype=bf)
    w = (1 + 0.1 * torch.randn(C, device=dev)).to(bf).requires_grad_()
    b = (0.1 * torch.randn(C, device=dev)).to(bf).requires_grad_()
    dy = torch.randn(N, C, device=dev, dtype=bf)
    io = 2.0 * N * C
    with torch.no_grad():
        record("layernorm", "fwd", "(32768, 768) bf16", t(lambda: F.layer_norm(x, (C,), w, b)), 2 * io + 8.0 * N)
    xl = x.clone().requires_grad_()

    def ln_fb():
        xl.grad = w.grad = b.grad = None
        F.layer_norm(xl, (C,), w, b).backward(dy)
    record("layernorm", "fwd+bwd", "(32768, 768) bf16", t(ln_fb), 2 * io + 3 * io + 16.0 * N)
    del x, xl, dy
    # GELU
    x = torch.randn(N, H, device=dev, dtype=bf)
    dy = torch.randn(N, H, device=dev, dtype=bf)
    io = 2.0 * N * H
    with torch.no_grad():
        record("gelu", "fwd", "(32768, 3072) bf16", t(lambda: F.gelu(x, approximate="tanh")), 2 * io)
    xl = x.clone().requires_grad_()

    def gelu_fb():
        xl.grad = None
        F.gelu(xl, approximate="tanh").backward(dy)
    record("gelu", "fwd+bwd", "(32768, 3072) bf16", t(gelu_fb), 2 * io + 3 * io)
    del x, xl, dy
    # Cross-entropy over the padded vocabulary row (PyTorch has no valid-vocab option; it reads
    # the whole row, the same bytes as ours).
    logits = 2 * torch.randn(N, Vp, device=dev, dtype=bf)
    targets = torch.randint(0, 50257, (N,), device=dev)
    io = 2.0 * N * Vp
    with torch.no_grad():
        record("cross_entropy", "fwd", "(32768, 50304) bf16", t(lambda: F.cross_entropy(logits, targets)), io + 4.0 * N)
    ll = logits.clone().requires_grad_()

    def ce_fb():
        ll.grad = None
        F.cross_entropy(ll, targets).backward()
    record("cross_entropy", "fwd+bwd", "(32768, 50304) bf16", t(ce_fb), io + 2 * io + 8.0 * N)
    del logits, ll
    torch.cuda.empty_cache()
    # AdamW, fused: GPT-2 124M shapes and one flat tensor of 124M.
    best = None
    for label, shapes in (("gpt2 shapes", gpt2_shapes()), ("flat", [(124_000_000,)])):
        params = [torch.nn.Parameter(0.02 * torch.randn(s, device=dev)) for s in shapes]
        for p in params:
            p.grad = 1e-3 * torch.randn_like(p)
        P = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
        ms = t(opt.step) * 124_000_000 / P  # normalised to 124M parameters
        print(f"  adamw fused over {label}: {P} params, {ms:.3f} ms per 124M")
        if best is None or ms < best:
            best = ms
        del params, opt
        torch.cuda.empty_cache()
    record("adamw", "step_f32", "124M, f32", best, 28.0 * 124_000_000)
    doc = {"system": f"pytorch {torch.__version__} eager", "device": torch.cuda.get_device_name(0), "results": results}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
