#!/usr/bin/env python
"""Training-step time of finetune / prompt / ptv2 on one backbone and one fixed batch.

    python benchmarks/step_time.py                       # MiniLM, batch 32 x 128, CPU
    python benchmarks/step_time.py --seq-len 64 --batch-size 16 --json out.json
    python benchmarks/step_time.py --device cuda --precision fp16 --rounds 20
    python benchmarks/step_time.py --cpu-dropout torch   # PyTorch's own dropout masks
    python benchmarks/step_time.py --backbone-dropout 0  # the opt-in dropout-free backbone
    python benchmarks/step_time.py --profile --methods finetune,ptv2   # where the time goes

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
    p.add_argument("--profile", action="store_true",
                   help="instead of timing, profile the methods' steps (interleaved, --rounds x "
                   "--steps each) and print, per step, the time and FLOP rate of the matrix "
                   "products and the largest other operators")
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


# operators whose FLOPs are counted: linear layers (addmm forward, mm backward), attention
# (bmm, or SDPA's fused CPU kernel, which runs when attention dropout is off)
FUSED_ATTENTION = ("_scaled_dot_product_flash_attention_for_cpu",
                   "_scaled_dot_product_flash_attention_for_cpu_backward")
MATRIX_PRODUCTS = ("addmm", "mm", "bmm") + FUSED_ATTENTION


def step_flops(step) -> dict[str, int]:
    """Floating-point operations of one call of ``step`` per operator of ``MATRIX_PRODUCTS``,
    counted by PyTorch's FlopCounterMode, i.e. what a frozen backbone saves on. The fused CPU
    attention kernel is counted with PyTorch's SDPA formulas (the counter knows only the GPU
    kernels); its backward recomputes the scores, so it counts 5 products where bmm counts 4."""
    from torch.utils import flop_counter

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    fused = [getattr(torch.ops.aten, name) for name in FUSED_ATTENTION]
    with flop_counter.FlopCounterMode(display=False, custom_mapping={
            fused[0]: forward, fused[1]: backward}) as counter:
        step()
    return {str(op).split(".")[-1]: n for op, n in counter.get_flop_counts()["Global"].items()}


def profile(methods: list[str], args) -> int:
    """Self time per operator of each method's step under torch.profiler (methods taking
    turns, --rounds x --steps steps each), the matrix products next to their counted FLOPs."""
    from collections import Counter

    steps, flops = {}, {}
    seconds, count = {m: Counter() for m in methods}, dict.fromkeys(methods, 0)
    for method in methods:
        steps[method], _ = make_step(method, args)
        steps[method]()
        flops[method] = step_flops(steps[method])
    for r in range(args.rounds):
        for method in (methods if r % 2 == 0 else methods[::-1]):
            with torch.profiler.profile() as prof:
                for _ in range(args.steps):
                    steps[method]()
                sync(args.device)
            for event in prof.key_averages():
                seconds[method][event.key.split("::")[-1]] += event.self_cpu_time_total / 1e6
            count[method] += args.steps
    print(f"{args.model}: batch {args.batch_size} x {args.seq_len}, P = {args.prefix_len}, "
          f"{torch.get_num_threads()} threads; self CPU seconds per step over "
          f"{args.rounds} rounds x {args.steps} steps (profiler overhead included)")
    for method in methods:
        per_step = {op: t / count[method] for op, t in seconds[method].items()}
        products = sum(per_step.get(op, 0.0) for op in MATRIX_PRODUCTS)
        rest = sorted(((t, op) for op, t in per_step.items() if op not in MATRIX_PRODUCTS),
                      reverse=True)
        print(f"{method:9s} step {sum(per_step.values()):.3f} s = matrix products "
              f"{products:.3f} s + other {sum(t for t, _ in rest):.3f} s")
        for op in MATRIX_PRODUCTS:
            t, gflop = per_step.get(op, 0.0), flops[method].get(op, 0) / 1e9
            if not (t or gflop):
                continue
            name = {FUSED_ATTENTION[0]: "fused attention",
                    FUSED_ATTENTION[1]: "fused attention backward"}.get(op, op)
            print(f"    {name:6s} {t:.3f} s {gflop:9.4g} GFLOP "
                  f"{gflop / t if t else 0.0:6.1f} GFLOP/s")
        print("    other: " + ", ".join(f"{op} {t:.3f}" for t, op in rest[:10]))
    return 0


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
        return profile(methods, args)
    steps, trainable, measurements, peak = {}, {}, {m: [] for m in methods}, {}
    flops = {}
    for method in methods:
        steps[method], trainable[method] = make_step(method, args)
        steps[method]()  # warm-up (allocations, optimizer state)
        flops[method] = sum(step_flops(steps[method]).values())  # also a warm-up step
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
              f"{r['iqr_ms']:8.1f} {ratio:>6s} {r['gflop']:7.4g} {flop_ratio:>6s} "
              f"{r['gflop'] / (r['median_ms'] / 1e3):8.1f}"
              + (f"  {r['peak_cuda_mib']:.0f}" if cuda else ""))
    print("GFLOP: matrix products of one step (torch.utils.flop_counter); their ratio is what "
          "a step would cost if nothing else took time")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
