#!/usr/bin/env python3
"""PyTorch peer of `sparsek bench train`: a nanoGPT-style GPT-2 (learned positions, pre-LayerNorm,
tanh GELU, tied head, vocabulary padded to 50304; initialised and decayed as sparsek's model: zero
biases, no weight decay on the embeddings) trained on random tokens with torch.compile,
bf16 autocast, SDPA (flash), fused AdamW (weight decay on matrices), gradient clipping at 1.0.
Reports steady-state tokens/s (median step time over --steps after --warmup), MFU (6 N + attention
FLOPs per token over 989 TFLOP/s) and peak GPU memory. Writes JSON."""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, T, C, L, H):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block(C, H) for _ in range(L))
        self.lnf = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)
        self.head.weight = self.wte.weight
        for n, p in self.named_parameters():  # as sparsek's Gpt: matrices N(0, 0.02), biases zero
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L) if n.endswith(("proj.weight", "fc2.weight")) else 0.02)
            elif n.endswith(".bias"):  # nn.Linear's default is uniform; LayerNorm's is already zero
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.lnf(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="train_peer.json")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast (compare with `sparsek bench train --dtype f32`)")
    ap.add_argument("--profile", default="", help="also write a per-kernel CUDA time table of one step here")
    a = ap.parse_args()
    torch.manual_seed(0)
    V, L, C, H = 50304, 12, 768, 12
    model = GPT(V, a.seq_len, C, L, H).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    # As `sparsek bench train`: weight decay on the matrices but not the embeddings (wte, tied to the
    # head, and wpe), norms or biases.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("wte.weight", "wpe.weight")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n in ("wte.weight", "wpe.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    cmodel = torch.compile(model)
    x = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda")
    y = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda")
    times, losses, norms = [], [], []
    torch.cuda.reset_peak_memory_stats()
    for step in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=not a.fp32):
            loss = cmodel(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_v = loss.item()
        losses.append(loss_v)
        norms.append(norm.item())
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    step_s = times[len(times) // 2]
    tokens = a.batch * a.seq_len
    flops_per_token = 6 * (n_params - a.seq_len * C) + 12 * L * C * a.seq_len  # PaLM appendix B (causal halving not applied)
    tps = tokens / step_s
    res = {"system": "pytorch", "torch": torch.__version__, "device": torch.cuda.get_device_name(), "batch": a.batch,
           "seq_len": a.seq_len, "params": n_params, "step_ms": step_s * 1e3, "tokens_per_s": tps,
           "mfu": tps * flops_per_token / 989e12, "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
           "final_loss": loss_v, "steps_run": a.warmup + a.steps,
           "dtype": "f32" if a.fp32 else "bf16 autocast", "losses": losses, "grad_norms": norms}
    print(json.dumps(res, indent=2))
    json.dump(res, open(a.out, "w"), indent=2)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = cmodel(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=60, max_name_column_width=90)
        open(a.profile, "w").write(table + "\n")


if __name__ == "__main__":
    main()
