#!/usr/bin/env python3
"""Peer of the fine-tuning benchmark (scripts/bench/bench_finetune.sh, issue "Hugging Face import"):
transformers' GPTNeoXForCausalLM with the Pythia-160m configuration (random weights: the GPU
machine has no network; throughput does not depend on the values), attn_implementation="sdpa",
bf16 autocast, fused AdamW (lr 1e-4, weight decay 0.01 on matrices), gradient clipping at 1.0,
trained on one fixed batch of random tokens. Reports the median step time after --warmup steps,
tokens/s and peak GPU memory (torch.cuda.max_memory_allocated). Writes JSON.

The transformers model is run as users run it (no torch.compile): that is the peer the issue names
("transformers' GPTNeoXForCausalLM (SDPA, bf16 autocast, fused AdamW)")."""
import argparse
import json
import time

import torch


def pythia160m_config(seq_len):
    from transformers import GPTNeoXConfig
    return GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, rotary_pct=0.25, rotary_emb_base=10000,
                         max_position_embeddings=max(2048, seq_len), use_parallel_residual=True,
                         tie_word_embeddings=False, hidden_act="gelu", layer_norm_eps=1e-5,
                         attention_dropout=0.0, hidden_dropout=0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="finetune_peer.json")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    from transformers import GPTNeoXForCausalLM
    import transformers
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(pythia160m_config(a.seq_len)).cuda()
    model.config._attn_implementation = "sdpa"
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    x = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda")
    times = []
    torch.cuda.reset_peak_memory_stats()
    loss_v = float("nan")
    for step in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_v = loss.item()
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    step_s = times[len(times) // 2]
    tokens = a.batch * a.seq_len
    res = {"system": "transformers GPTNeoXForCausalLM (sdpa, bf16 autocast, fused AdamW)", "torch": torch.__version__,
           "transformers": transformers.__version__, "device": torch.cuda.get_device_name(), "batch": a.batch,
           "seq_len": a.seq_len, "params": n_params, "step_ms": step_s * 1e3, "tokens_per_s": tokens / step_s,
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "final_loss": loss_v,
           "steps_run": a.warmup + a.steps, "attn_implementation": model.config._attn_implementation}
    print(json.dumps(res, indent=2))
    json.dump(res, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()
