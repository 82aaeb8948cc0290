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
        self.real_vocab = V  # --init-from: 50257, the loss over the real tokens only
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
        logits = self.head(self.lnf(x))[..., : self.real_vocab]
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def load_sparsek_init(model, d):
    """Copies a transformers GPT-2 safetensors file (sparsek's export) into the peer's layout; returns
    the number of real tokens (the exported embedding's rows)."""
    from safetensors.torch import load_file
    w = {k.removeprefix("transformer."): v for k, v in load_file(f"{d}/model.safetensors").items()}
    with torch.no_grad():
        V = w["wte.weight"].shape[0]
        model.wte.weight[:V].copy_(w["wte.weight"])
        model.wpe.weight.copy_(w["wpe.weight"][: model.wpe.weight.shape[0]])
        for i, b in enumerate(model.blocks):
            h = lambda n: w[f"h.{i}.{n}"]
            for mine, theirs, conv in ((b.ln1.weight, "ln_1.weight", 0), (b.ln1.bias, "ln_1.bias", 0),
                                       (b.ln2.weight, "ln_2.weight", 0), (b.ln2.bias, "ln_2.bias", 0),
                                       (b.qkv.weight, "attn.c_attn.weight", 1), (b.qkv.bias, "attn.c_attn.bias", 0),
                                       (b.proj.weight, "attn.c_proj.weight", 1), (b.proj.bias, "attn.c_proj.bias", 0),
                                       (b.fc.weight, "mlp.c_fc.weight", 1), (b.fc.bias, "mlp.c_fc.bias", 0),
                                       (b.fc2.weight, "mlp.c_proj.weight", 1), (b.fc2.bias, "mlp.c_proj.bias", 0)):
                mine.copy_(h(theirs).t() if conv else h(theirs))
        model.lnf.weight.copy_(w["ln_f.weight"])
        model.lnf.bias.copy_(w["ln_f.bias"])
    return V


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="train_peer.json")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast (compare with `sparsek bench train --dtype f32`)")
    ap.add_argument("--bf16-params", action="store_true",
                    help="bf16 parameters and activations with fp32 master weights in the optimizer, no autocast "
                         "(the precision of sparsek's CUDA training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-from", default="",
                    help="start from `sparsek bench train --dump-init DIR`'s weights and tokens (logits cut to the "
                         "50257 real tokens, as sparsek's loss)")
    ap.add_argument("--padded-vocab-loss", action="store_true",
                    help="with --init-from: keep the loss over all 50304 logits (the peer's default)")
    ap.add_argument("--param-norm-steps", default="", help="comma-separated steps whose per-parameter gradient norms are stored")
    ap.add_argument("--profile", default="", help="also write a per-kernel CUDA time table of one step here")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    V, L, C, H = 50304, 12, 768, 12
    model = GPT(V, a.seq_len, C, L, H).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    if a.init_from:
        real_tokens = load_sparsek_init(model, a.init_from)
        model.real_vocab = V if a.padded_vocab_loss else real_tokens
    # --bf16-params: the optimizer updates fp32 masters, copied (rounded) into the bf16 model after each step.
    masters = {n: p.detach().float().clone() for n, p in model.named_parameters()} if a.bf16_params else {}
    if a.bf16_params:
        model = model.to(torch.bfloat16)
    opt_params = dict(model.named_parameters()) if not masters else masters
    # As `sparsek bench train`: weight decay on the matrices but not the embeddings (wte, tied to the
    # head, and wpe), norms or biases.
    decay = [p for n, p in opt_params.items() if p.dim() >= 2 and n not in ("wte.weight", "wpe.weight")]
    no_decay = [p for n, p in opt_params.items() if p.dim() < 2 or n in ("wte.weight", "wpe.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    cmodel = torch.compile(model)
    x = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda")
    y = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda")
    if a.init_from:
        import numpy as np
        tok = torch.from_numpy(np.fromfile(f"{a.init_from}/tokens.bin", dtype=np.int32).astype(np.int64)).cuda()
        assert tok.numel() == 2 * a.batch * a.seq_len, "tokens.bin holds another batch shape"
        x, y = tok[: x.numel()].view_as(x), tok[x.numel():].view_as(y)
    times, losses, norms = [], [], []
    norm_steps = {int(s) for s in a.param_norm_steps.split(",") if s}
    param_norms = {}
    torch.cuda.reset_peak_memory_stats()
    for step in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=not a.fp32 and not a.bf16_params):
            loss = cmodel(x, y)
        loss.backward()
        if masters:
            for n, p in model.named_parameters():
                masters[n].grad = p.grad.float()
        if step in norm_steps:  # before clipping, as the global norm
            param_norms[str(step)] = {n: p.grad.float().norm().item() for n, p in model.named_parameters()}
        norm = torch.nn.utils.clip_grad_norm_(list(opt_params.values()), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if masters:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(masters[n])
                    p.grad = None
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
           "dtype": "f32" if a.fp32 else "bf16 params, fp32 masters" if a.bf16_params else "bf16 autocast", "losses": losses, "grad_norms": norms}
    if param_norms:
        res["param_grad_norms"] = param_norms
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
