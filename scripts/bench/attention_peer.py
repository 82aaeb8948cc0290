#!/usr/bin/env python3
"""PyTorch peers of `sparsek bench attention`, on the same shapes in the same device call:
SDPA with the flash backend (FlashAttention-2), SDPA with the cuDNN backend, and FlexAttention
with a sliding-window block mask (compiled). bf16, `--tokens` tokens per batch (B = tokens / T),
12 heads of dim 64 and 6 heads of dim 128, causal, forward and forward+backward, median of
`--iters` runs timed with CUDA events, L2 flushed before each; each case starts after --rest-ms
of idle GPU, as ours do. Writes JSON.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ops_peer import median_ms  # same directory: event timing with the L2 flushed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="attention_peer.json")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--t-min", type=int, default=1024)
    ap.add_argument("--t-max", type=int, default=32768)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--head-dims", default="64,128", help="comma-separated head dims")
    ap.add_argument("--systems", default="sdpa_flash,sdpa_cudnn,flex_attention", help="comma-separated peers to time")
    ap.add_argument("--rest-ms", type=int, default=500, help="idle time before each case, as `sparsek bench attention`")
    args, _ = ap.parse_known_args()  # the sparsek-only options of `sparsek bench attention` pass through

    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    # One compiled graph per shape: raise dynamo's recompile limit so that later shapes are not
    # silently run eagerly (dense scores: slow and out of memory at long T).
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1000)
    flex = torch.compile(flex_attention, dynamic=False)
    flush = torch.empty(256 << 20, dtype=torch.int16, device="cuda")
    results = []
    systems = set(args.systems.split(","))
    for D in (int(d) for d in args.head_dims.split(",")):
        H = 768 // D
        T = args.t_min
        while T <= args.t_max:
            B = args.tokens // T
            q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            dout = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)

            def sdpa(backend):
                def fwd():
                    with sdpa_kernel(backend):
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

                def fb():
                    o = fwd()
                    torch.autograd.grad(o, (q, k, v), dout)
                return fwd, fb

            w = args.window

            def sliding(b, h, q_idx, kv_idx):
                return (q_idx >= kv_idx) & (q_idx - kv_idx < w)
            block_mask = create_block_mask(sliding, None, None, T, T, device="cuda") if "flex_attention" in systems else None

            def flex_fwd():
                return flex(q, k, v, block_mask=block_mask)

            def flex_fb():
                o = flex_fwd()
                torch.autograd.grad(o, (q, k, v), dout)

            cases = [("sdpa_flash", "full", 0, *sdpa(SDPBackend.FLASH_ATTENTION)),
                     ("sdpa_cudnn", "full", 0, *sdpa(SDPBackend.CUDNN_ATTENTION)),
                     ("flex_attention", "sliding_window", w, flex_fwd, flex_fb)]
            for system, kind, window, fwd, fb in cases:
                if system not in systems:
                    continue
                torch.cuda.synchronize()
                time.sleep(args.rest_ms / 1000)  # each case from a rested GPU (the power limiter settles)
                try:
                    with torch.no_grad():
                        f_ms = median_ms(fwd, flush, 3, args.iters)
                    fb_ms = median_ms(fb, flush, 3, args.iters)
                except Exception as e:  # a backend missing on this machine is reported, not fatal
                    print(f"{system} D={D} T={T}: unavailable: {e}", flush=True)
                    continue
                print(f"{system:15s} D={D:3d} T={T:6d} fwd {f_ms:8.3f} ms  fwd+bwd {fb_ms:8.3f} ms", flush=True)
                results.append({"system": system, "kind": kind, "window": window, "head_dim": D, "heads": H,
                                "T": T, "B": B, "fwd_ms": f_ms, "fwd_bwd_ms": fb_ms})
            del q, k, v, dout
            T *= 2
    doc = {"system": "pytorch", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
           "cudnn": torch.backends.cudnn.version(), "results": results}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
