#!/usr/bin/env python3
"""PyTorch peers of `sparsek bench lsh`, on the same shapes in the same device call:
  - sdpa_flash: torch SDPA with the flash backend, causal FULL attention (the dense baseline), bf16,
    q, k, v (B, H, T, D);
  - hf_lsh: Hugging Face transformers' LSHSelfAttention (Reformer; decoder, one chunk of look-back,
    no look-ahead, no dropout, n_hashes 2, chunk 128, n_buckets = sparsek's default for T), on
    hidden states (B, T, H * D); its time includes the query/key and value projections (two
    (B T) x C x C GEMMs, small next to the rest). Run in --hf-dtypes (default fp32 and bf16; a
    dtype the layer fails in is reported as an error, not timed).
Forward + backward (gradients of the inputs and, for HF, its weights), `--tokens` tokens per batch
(B = tokens / T), median of `--iters` runs timed with CUDA events, L2 flushed before each. JSON out.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ops_peer import median_ms  # same directory: event timing with the L2 flushed


def default_buckets(T, chunk):  # lsh_default_buckets (src/attention/lsh/lsh_reference.h)
    n, p = 2 * (T // chunk), 2
    while p * 2 <= n:
        p *= 2
    return p


def hf_layer(T, H, D, n_hashes, chunk, dtype):
    from transformers import ReformerConfig
    from transformers.models.reformer.modeling_reformer import LSHSelfAttention
    cfg = ReformerConfig(
        hidden_size=H * D, num_attention_heads=H, attention_head_size=D, num_hashes=n_hashes,
        num_buckets=default_buckets(T, chunk), lsh_attn_chunk_length=chunk, lsh_num_chunks_before=1,
        lsh_num_chunks_after=0, is_decoder=True, lsh_attention_probs_dropout_prob=0.0, hash_seed=0,
        attn_layers=["lsh"], max_position_embeddings=max(T, 4096), axial_pos_embds=False)
    return LSHSelfAttention(cfg).to(device="cuda", dtype=dtype).train(True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="lsh_peer.json")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--t-min", type=int, default=4096)
    ap.add_argument("--t-max", type=int, default=65536)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--n-hashes", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--hf-dtypes", default="fp32,bf16")
    ap.add_argument("--systems", default="sdpa_flash,hf_lsh")
    args, _ = ap.parse_known_args()
    systems = set(args.systems.split(","))
    flush = torch.empty(256 << 20, dtype=torch.int16, device="cuda")
    H, D = args.heads, args.head_dim
    results, versions = [], {"torch": torch.__version__}
    try:
        import transformers
        versions["transformers"] = transformers.__version__
    except ImportError as e:
        versions["transformers"] = f"not importable: {e}"
    T = args.t_min
    while T <= args.t_max:
        B = args.tokens // T
        if B < 1:
            break
        if "sdpa_flash" in systems:
            q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            dout = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)

            def fwd():
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fb():
                torch.autograd.grad(fwd(), (q, k, v), dout)

            r = {"system": "sdpa_flash", "T": T, "B": B, "heads": H, "head_dim": D, "dtype": "bf16",
                 "fwd_ms": median_ms(fwd, flush, iters=args.iters), "fwd_bwd_ms": median_ms(fb, flush, iters=args.iters)}
            print(json.dumps(r), flush=True)
            results.append(r)
            del q, k, v, dout
        if "hf_lsh" in systems:
            for name in args.hf_dtypes.split(","):
                dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
                r = {"system": "hf_lsh", "T": T, "B": B, "heads": H, "head_dim": D, "dtype": name,
                     "n_hashes": args.n_hashes, "chunk": args.chunk, "n_buckets": default_buckets(T, args.chunk)}
                try:
                    layer = hf_layer(T, H, D, args.n_hashes, args.chunk, dtype)
                    x = torch.randn(B, T, H * D, device="cuda", dtype=dtype, requires_grad=True)
                    g = torch.randn(B, T, H * D, device="cuda", dtype=dtype)
                    params = [x] + list(layer.parameters())

                    def hf_fwd():
                        res = layer(x)
                        return res.hidden_states if hasattr(res, "hidden_states") else res[0]

                    def hf_fb():
                        torch.autograd.grad(hf_fwd(), params, g)

                    with torch.no_grad():
                        r["fwd_ms"] = median_ms(hf_fwd, flush, iters=args.iters)
                    r["fwd_bwd_ms"] = median_ms(hf_fb, flush, iters=args.iters)
                    del layer, x, g, params
                except Exception as e:  # noqa: BLE001 - report, do not stop the other cases
                    r["error"] = f"{type(e).__name__}: {e}"[:400]
                print(json.dumps(r), flush=True)
                results.append(r)
                torch.cuda.empty_cache()
        T *= 2
    doc = {"system": "pytorch", "device": torch.cuda.get_device_name(0), "versions": versions,
           "tokens": args.tokens, "iters": args.iters, "results": results}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
