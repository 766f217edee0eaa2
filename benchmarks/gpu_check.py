"""One-GPU check: P-Tuning v2 vs fine-tuning on GLM-shaped, randomly initialised models.

For each shape it trains a few steps of
  finetune  every parameter trains: fp32 weights, fp16 autocast, GradScaler, AdamW
  ptv2      frozen fp16 backbone, fp32 deep prompts (all layers) + GLM pooler head, fp16
            autocast, GradScaler, AdamW over the prompt and head only
and reports the median step time, tokens/s, model FLOPs utilisation (against the GPU's dense
fp16 peak) and peak memory, plus the ptv2/finetune step-time ratio.

Model FLOPs per token (classification, no LM head), N = 12·L·H² matmul weights:
  forward      2·N + 4·L·S·H   (the second term: q·kᵀ and attention·v)
  finetune     3 × forward     (backward = input gradients + weight gradients)
  ptv2         2·(2·N) + 3·(4·L·S·H)   (no weight gradients; attention still needs dq, dk, dv)
This uses plain PyTorch (no DeepSpeed, which the GPU image lacks): it measures the compute
saving of a frozen backbone, not ZeRO communication.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glm.config import GLMConfig  # noqa: E402
from glm.model import GLMModel  # noqa: E402
from ptv2_ds.heads import PoolerHead  # noqa: E402
from ptv2_ds.prompts import DeepPrompt, PrefixShape  # noqa: E402

SHAPES = {
    # name: (preset, layers kept, methods)
    "glm-2b": ("glm-2b", None, ("finetune", "ptv2")),
    "glm-10b-8layers": ("glm-10b", 8, ("finetune", "ptv2")),
    "glm-10b": ("glm-10b", None, ("ptv2",)),
    "tiny": ("tiny", None, ("finetune", "ptv2")),  # CPU smoke test of this script
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops() -> float | None:
    name = torch.cuda.get_device_name()
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def flops_per_token(cfg: GLMConfig, seq: int, method: str) -> float:
    n = 12 * cfg.num_layers * cfg.hidden_size ** 2
    attn = 4 * cfg.num_layers * seq * cfg.hidden_size
    if method == "finetune":
        return 3 * (2 * n + attn)
    return 2 * (2 * n) + 3 * attn


def run_one(cfg: GLMConfig, method: str, args) -> dict:
    torch.manual_seed(0)
    dev = torch.device(args.device)
    frozen = method != "finetune"
    torch.set_default_dtype(torch.float16 if frozen else torch.float32)
    with dev:
        model = GLMModel(cfg)
    torch.set_default_dtype(torch.float32)
    model.train()
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    shape = PrefixShape(cfg.num_layers, cfg.num_attention_heads, cfg.head_dim)
    with dev:
        head = PoolerHead(cfg.hidden_size, 2)
        prompt = DeepPrompt(shape, args.prefix_len, tuple(range(cfg.num_layers))) if frozen \
            else None
    if frozen:
        model.requires_grad_(False)
        params = list(head.parameters()) + list(prompt.parameters())
    else:
        params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    scaler = torch.amp.GradScaler(args.device)
    B, S = args.batch, args.seq
    ids = torch.randint(0, cfg.vocab_size - 64, (B, S), device=dev)
    pos = torch.stack([torch.arange(S, device=dev).expand(B, S),
                       torch.zeros(B, S, dtype=torch.long, device=dev)], dim=1)
    sep = torch.full((B,), S, device=dev)
    labels = torch.randint(0, 2, (B,), device=dev)

    def step():
        with torch.autocast(args.device, dtype=torch.float16):
            prefix = prompt(B) if prompt is not None else None
            hidden = model(ids, pos, sep, prefix=prefix).last_hidden_state
            loss = F.cross_entropy(head(hidden, {}, None).float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    cuda = args.device == "cuda"
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    tokens = B * S
    flops = flops_per_token(cfg, S, method) * tokens / median
    peak = peak_tflops() if cuda else None
    result = {"method": method, "step_s": median,
              "tokens_per_s": tokens / median,
              "model_tflops": flops / 1e12,
              "mfu": (flops / 1e12 / peak) if peak else None,
              "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
              "trainable_params": sum(p.numel() for p in params),
              "backbone_params": sum(p.numel() for p in model.parameters())}
    del model, head, prompt, optimizer, params
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="glm-2b,glm-10b-8layers,glm-10b")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--prefix-len", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cuda", help="cpu only for a smoke test (--shapes tiny)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check needs a CUDA GPU", file=sys.stderr)
        return 2
    print(f"# {' '.join(sys.argv)}")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"# torch {torch.__version__}, {device_name}, batch {args.batch}, "
          f"seq {args.seq}, prefix {args.prefix_len}, fp16 autocast, "
          f"checkpointing {'on' if args.checkpointing else 'off'}")
    rows = []
    for name in args.shapes.split(","):
        preset, layers, methods = SHAPES[name]
        overrides = {"num_layers": layers} if layers else {}
        cfg = (GLMConfig(vocab_size=512, hidden_size=64, num_layers=2, num_attention_heads=4,
                         max_position_embeddings=64) if preset == "tiny"
               else GLMConfig.from_preset(preset, **overrides))
        by_method = {}
        for method in methods:
            try:
                r = run_one(cfg, method, args)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                r = {"method": method, "error": "out of memory"}
            r["shape"] = name
            by_method[method] = r
            rows.append(r)
        if "finetune" in by_method and "step_s" in by_method["finetune"] \
                and "step_s" in by_method.get("ptv2", {}):
            by_method["ptv2"]["ratio_to_finetune"] = (by_method["ptv2"]["step_s"] /
                                                      by_method["finetune"]["step_s"])
    print(f"{'shape':16} {'method':9} {'step ms':>8} {'tokens/s':>10} {'TFLOP/s':>8} "
          f"{'MFU':>6} {'peak GiB':>9} {'ptv2/ft':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['shape']:16} {r['method']:9} {r['error']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        ratio = f"{r['ratio_to_finetune']:.3f}" if "ratio_to_finetune" in r else ""
        print(f"{r['shape']:16} {r['method']:9} {1000 * r['step_s']:8.1f} "
              f"{r['tokens_per_s']:10.0f} {r['model_tflops']:8.1f} {mfu:>6} "
              f"{r['peak_mem_gib']:9.2f} {ratio:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
