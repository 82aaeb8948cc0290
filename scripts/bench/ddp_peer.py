"""PyTorch DDP peer of the multi-GPU benchmark (scripts/bench/bench_ddp.sh), without torchrun:
torch.multiprocessing spawns one process per GPU (NCCL process group over tcp://127.0.0.1), each
training the nanoGPT-style GPT-2 124M of train_peer.py (torch.compile, bf16 autocast, SDPA flash,
fused AdamW, clip 1.0) wrapped in DistributedDataParallel (fp32 gradients all-reduced in DDP's
buckets, overlapped with backward) on its own fixed batch of random tokens (seeded by rank).
--zero: torch.distributed.optim.ZeroRedundancyOptimizer (ZeRO-1) instead of plain AdamW.
Rank 0 writes the median step time, tokens/s over all ranks, the peak memory of rank 0, and
the losses. Usage: python3 ddp_peer.py --nproc 2 --out ddp_peer.json [--zero]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_peer import GPT  # noqa: E402  the same model as the single-GPU peer


def worker(rank, a):
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=a.nproc)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    V, L, C, H = 50304, 12, 768, 12
    model = GPT(V, a.seq_len, C, L, H).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
    kw = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    if a.zero:
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(decay, optimizer_class=torch.optim.AdamW, weight_decay=0.1, **kw)
        opt.add_param_group({"params": no_decay, "weight_decay": 0.0})
    else:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], **kw)
    cmodel = torch.compile(ddp)
    g = torch.Generator(device="cuda").manual_seed(1000 + rank)
    x = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda", generator=g)
    y = torch.randint(0, 50257, (a.batch, a.seq_len), device="cuda", generator=g)
    times, losses = [], []
    torch.cuda.reset_peak_memory_stats()
    for step in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = cmodel(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.detach().clone()
        dist.all_reduce(lv, op=dist.ReduceOp.AVG)
        losses.append(lv.item())
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    step_s = times[len(times) // 2]
    if rank == 0:
        tokens = a.batch * a.seq_len * a.nproc
        flops_per_token = 6 * (n_params - a.seq_len * C) + 12 * L * C * a.seq_len
        tps = tokens / step_s
        res = {"system": "pytorch-ddp" + ("-zero1" if a.zero else ""), "torch": torch.__version__,
               "device": torch.cuda.get_device_name(), "nproc": a.nproc, "batch_per_gpu": a.batch,
               "seq_len": a.seq_len, "params": n_params, "step_ms": step_s * 1e3, "tokens_per_s": tps,
               "mfu_per_gpu": tps / a.nproc * flops_per_token / 989e12,
               "peak_mem_gib_rank0": torch.cuda.max_memory_allocated() / 2**30, "losses": losses,
               "steps_run": a.warmup + a.steps}
        print(json.dumps({k: v for k, v in res.items() if k != "losses"}, indent=2))
        json.dump(res, open(a.out, "w"), indent=2)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--out", default="ddp_peer.json")
    ap.add_argument("--batch", type=int, default=32, help="sequences per GPU")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--port", type=int, default=29611)
    ap.add_argument("--zero", action="store_true", help="ZeroRedundancyOptimizer (ZeRO-1)")
    a = ap.parse_args()
    assert torch.cuda.device_count() >= a.nproc, f"need {a.nproc} GPUs, found {torch.cuda.device_count()}"
    mp.spawn(worker, args=(a,), nprocs=a.nproc, join=True)


if __name__ == "__main__":
    main()
