#!/usr/bin/env python
"""Training-step time of finetune / prompt / ptv2 on one backbone and one fixed batch.

    python benchmarks/step_time.py                       # MiniLM, batch 32 x 128, CPU
    python benchmarks/step_time.py --seq-len 64 --batch-size 16 --json out.json
    python benchmarks/step_time.py --device cuda --precision fp16 --rounds 20
    python benchmarks/step_time.py --cpu-dropout torch   # PyTorch's own dropout masks
    python benchmarks/step_time.py --backbone-dropout 0  # the opt-in dropout-free backbone
    python benchmarks/step_time.py --profile ptv2        # top operators of one method's step

A step is what the trainer does per micro-batch, without DeepSpeed: forward, cross-entropy,
backward, AdamW over ``model.trainable_parameters()``, zero_grad, in training mode (dropout
on). Every method gets the same batch (random non-special ids, no padding) and its own model
on a fresh copy of the backbone; the methods take turns, ``--steps`` steps each per round, so
that a busy machine slows them alike; times are ``torch.utils.benchmark`` measurements merged
over the rounds (median and IQR). On CUDA the peak memory of each method's steps is reported
too.

Expectation: a frozen backbone skips the weight-gradient half of the backward pass (and the
optimizer over the backbone), so ptv2/finetune should be about (1 + 1) / (1 + 2) = 0.67 when
forward : input-grad : weight-grad costs are 1 : 1 : 1. The table gives the counted matrix-
product FLOPs of each step next to its time (ptv2's attention is P columns wider and its
bottom layer needs no input gradient, so its count is 0.68 of finetune's at 32 x 128, P = 16):
time ratio above FLOP ratio = work other than matrix products (dropout masks, softmax, GELU,
LayerNorm, copies, optimizer), or products running at a lower rate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import benchmark

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

METHODS = ("finetune", "prompt", "ptv2")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm", help="backbone: minilm, a directory, a hub "
                   "name or a GLM preset (with --model-path)")
    p.add_argument("--model-path", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128, help="tokens per example")
    p.add_argument("--prefix-len", type=int, default=16)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="bf16/fp16: autocast around the forward pass")
    p.add_argument("--cpu-dropout", choices=("fast", "torch"), default="fast",
                   help="how CPU dropout masks are drawn (ptv2_ds/dropout.py)")
    p.add_argument("--backbone-dropout", type=float, default=None,
                   help="set every dropout inside the backbone to this p (as ptv2 train's "
                   "--backbone-dropout; default: the checkpoint's, 0.1 for MiniLM)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="steps per method per round")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--profile", choices=METHODS, default=None,
                   help="instead of timing, print the top operators of this method's step")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def make_step(method: str, args):
    """A zero-argument training step for ``method`` and its model's trainable count."""
    from ptv2_ds.backbones import load_backbone
    from ptv2_ds.model import PromptedModel, PromptSettings

    torch.manual_seed(0)
    backbone = load_backbone(args.model, model_path=args.model_path)
    if args.backbone_dropout is not None:
        backbone.set_dropout(args.backbone_dropout)
    model = PromptedModel(backbone, PromptSettings(method=method, prefix_len=args.prefix_len),
                          num_outputs=2).to(args.device).train()
    trainable = model.trainable_parameters()
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (args.batch_size, args.seq_len), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    batch = {k: v.to(args.device) for k, v in batch.items()}
    labels = torch.randint(0, 2, (args.batch_size,), generator=g).to(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    device_type = torch.device(args.device).type

    def step() -> None:
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(batch).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in trainable)


def step_flops(step) -> int:
    """Floating-point operations of one call of ``step`` counted by PyTorch's FlopCounterMode:
    the matrix products (linear layers, attention), i.e. what the frozen backbone saves on."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> int:
    args = parse_args(argv)
    from ptv2_ds.dropout import set_cpu_dropout

    set_cpu_dropout(args.cpu_dropout)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.profile:
        step, _ = make_step(args.profile, args)
        step(), step()
        with torch.profiler.profile() as prof:
            for _ in range(args.steps):
                step()
            sync(args.device)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
        return 0
    steps, trainable, measurements, peak = {}, {}, {m: [] for m in methods}, {}
    flops = {}
    for method in methods:
        steps[method], trainable[method] = make_step(method, args)
        steps[method]()  # warm-up (allocations, optimizer state)
        flops[method] = step_flops(steps[method])  # also the second warm-up step
    cuda = args.device.startswith("cuda")
    for r in range(args.rounds):
        for method in (methods if r % 2 == 0 else methods[::-1]):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            timer = benchmark.Timer("step()", globals={"step": steps[method]},
                                    label="training step", sub_label=method,
                                    num_threads=torch.get_num_threads())
            measurements[method].append(timer.timeit(args.steps))
            if cuda:
                peak[method] = max(peak.get(method, 0), torch.cuda.max_memory_allocated())
    rows = []
    for method in methods:
        m = benchmark.Measurement.merge(measurements[method])[0]
        rows.append({"method": method, "trainable": trainable[method],
                     "median_ms": m.median * 1e3, "iqr_ms": m.iqr * 1e3,
                     "gflop": flops[method] / 1e9,
                     **({"peak_cuda_mib": peak[method] / 2**20} if cuda else {})})
    base = next((r["median_ms"] for r in rows if r["method"] == "finetune"), None)
    base_gflop = next((r["gflop"] for r in rows if r["method"] == "finetune"), None)
    dropout = ("backbone dropout off" if args.backbone_dropout == 0 else
               f"dropout on ({args.cpu_dropout} CPU masks"
               + (f", backbone p = {args.backbone_dropout:g})" if args.backbone_dropout
                  else ")"))
    print(f"{args.model}: batch {args.batch_size} x {args.seq_len}, P = {args.prefix_len}, "
          f"{args.device} {args.precision}, {torch.get_num_threads()} threads, {dropout}, "
          f"{args.rounds} rounds x {args.steps} steps, "
          f"torch {torch.__version__}")
    print(f"{'method':9s} {'trainable':>12s} {'median ms':>10s} {'IQR ms':>8s} {'vs ft':>6s} "
          f"{'GFLOP':>7s} {'vs ft':>6s} {'GFLOP/s':>8s}" + ("  peak CUDA MiB" if cuda else ""))
    for r in rows:
        r["vs_finetune"] = r["median_ms"] / base if base else None
        r["gflop_vs_finetune"] = r["gflop"] / base_gflop if base_gflop else None
        ratio = f"{r['vs_finetune']:.2f}" if base else "-"
        flop_ratio = f"{r['gflop_vs_finetune']:.2f}" if base_gflop else "-"
        print(f"{r['method']:9s} {r['trainable']:12,d} {r['median_ms']:10.1f} "
              f"{r['iqr_ms']:8.1f} {ratio:>6s} {r['gflop']:7.1f} {flop_ratio:>6s} "
              f"{r['gflop'] / (r['median_ms'] / 1e3):8.1f}"
              + (f"  {r['peak_cuda_mib']:.0f}" if cuda else ""))
    print("GFLOP: matrix products of one step (torch.utils.flop_counter); their ratio is what "
          "a step would cost if nothing else took time")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
