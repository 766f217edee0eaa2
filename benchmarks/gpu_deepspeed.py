"""The real DeepSpeed engine on one GPU: `ptv2 train` under ZeRO-3 fp16 on a GLM-shaped,
randomly initialised checkpoint, ptv2 vs finetune, plus which SDPA kernel the prefix attention
gets. The GPU counterpart of `gpu_check.py` (plain PyTorch): here the step is the trainer's
own (DeepSpeed engine, ZeRO-3 partitioning and gathering, loss scaling, data loading).

    python benchmarks/gpu_deepspeed.py --out /tmp/gds                     # GLM-2B shape, GPU
    python benchmarks/gpu_deepspeed.py --shape tiny --device cpu --steps 3 --out /tmp/gds
                                                                          # CPU smoke test

For each method it writes a random checkpoint of the shape (fp16, hub layout), a synthetic
RTE-format file whose every pair fills --seq tokens (so each batch is B x S), and runs
`python -m ptv2_ds.cli.main train --deepspeed CONFIG --max-steps N` as a child process,
sampling the GPU's used memory (nvidia-smi) meanwhile. The step time is the median interval
between the optimizer steps of OUT/train_log.jsonl after the first --skip steps; model FLOPs
per token as in gpu_check.py, MFU against the GPU's dense fp16 peak. The GPU image has no
DeepSpeed: benchmarks/gpu_wheels.sh downloads the wheels it lacks (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = {"cuda": "ds_configs/zero3_fp16.json", "cpu": "ds_configs/cpu_zero3.json"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="glm-2b", help="a GLM preset (glm-large, glm-2b, "
                   "glm-10b) or tiny (hidden 64, 2 layers: the CPU smoke test)")
    p.add_argument("--layers", type=int, default=None, help="keep only this many layers")
    p.add_argument("--methods", default="ptv2,finetune")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--prefix-len", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per method")
    p.add_argument("--skip", type=int, default=5, help="first steps left out of the median")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--ds-config", default=None, help="default: ds_configs/zero3_fp16.json "
                   "(cuda), ds_configs/cpu_zero3.json (cpu)")
    p.add_argument("--out", required=True, help="work directory (checkpoint, data, runs)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def glm_config(shape: str, layers: int | None):
    from glm.config import PRESETS, GLMConfig

    if shape == "tiny":
        cfg = GLMConfig(vocab_size=50304, hidden_size=64, num_layers=2, num_attention_heads=4,
                        max_position_embeddings=1024, tokenizer="gpt2")
    else:
        cfg = PRESETS[shape]
    return cfg if layers is None else dataclasses.replace(cfg, num_layers=layers)


def write_checkpoint(cfg, directory: Path, device: str) -> None:
    """Random weights in the hub layout (config.json + model.safetensors), fp16 as THUDM's."""
    import torch
    from safetensors.torch import save_file

    from glm.model import GLMModel

    if (directory / "model.safetensors").exists():
        return
    torch.manual_seed(0)
    with torch.device(device):
        model = GLMModel(cfg).half()
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
              str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(cfg.to_dict()))
    del model


def write_data(directory: Path, seq: int, rows: int) -> dict[str, str]:
    """RTE-format pairs long enough to be truncated to ``seq`` tokens (every batch B x S)."""
    words = []
    for line in (REPO / "examples/data/sst2/train.tsv").read_text().splitlines()[1:2000]:
        words.extend(line.split("\t")[0].split())
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in (("train", rows), ("dev", 16)):
        lines = [json.dumps({"premise": " ".join(rng.choices(words, k=seq)),
                             "hypothesis": " ".join(rng.choices(words, k=12)),
                             "label": rng.choice(["entailment", "not_entailment"]), "idx": i})
                 for i in range(n)]
        paths[split] = str(directory / f"{split}.jsonl")
        Path(paths[split]).write_text("\n".join(lines) + "\n")
    return paths


class GpuMemorySampler(threading.Thread):
    """Peak of nvidia-smi's memory.used (MiB) while it runs: the whole process's footprint,
    caching allocator and DeepSpeed buffers included."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._stop = 0, threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                                       "--format=csv,noheader,nounits"], capture_output=True,
                                      text=True, timeout=10).stdout.split()
                self.peak = max([self.peak] + [int(u) for u in used if u.isdigit()])
            except (OSError, subprocess.SubprocessError):
                return
            self._stop.wait(0.5)

    def stop(self) -> int:
        self._stop.set()
        self.join()
        return self.peak


def train(method: str, model_dir: Path, data: dict, out: Path, args) -> dict:
    config = args.ds_config or str(REPO / CONFIGS[args.device])
    cmd = [sys.executable, "-m", "ptv2_ds.cli.main", "train", "--model", str(model_dir),
           "--task", "rte", "--train-file", data["train"], "--validation-file", data["dev"],
           "--method", method, "--deepspeed", config, "--precision",
           "fp16" if args.device == "cuda" else "fp32", "--batch-size", str(args.batch),
           "--max-seq-len", str(args.seq), "--prefix-len", str(args.prefix_len),
           "--max-steps", str(args.steps), "--log-every", "1", "--eval-every",
           str(args.steps), "--lr", "1e-5" if method == "finetune" else "5e-3",
           "--output-dir", str(out), "--resume", "none"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if args.device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
    sampler = GpuMemorySampler() if args.device == "cuda" else None
    if sampler:
        sampler.start()
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - start
    peak = sampler.stop() if sampler else None
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{method}: ptv2 train exited with {proc.returncode}")
    times = [json.loads(line)["time"] for line in (out / "train_log.jsonl").read_text()
             .splitlines() if '"loss"' in line]
    steps = [b - a for a, b in zip(times, times[1:])][args.skip:]
    report = json.loads((out / "zero_report.json").read_text())
    return {"method": method, "step_s": statistics.median(steps), "steps_timed": len(steps),
            "wall_s": wall, "gpu_mem_used_peak_mib": peak, "zero_report": report}


def attention_kernels(device: str) -> dict[str, list[str]]:
    """Kernels the prefix attention launches (forward + backward, fp16, dropout on), for
    GLM's attention and for the Hugging Face adapter's (ptv2_ds.dropout.attention)."""
    import torch

    from glm.model import GLMSelfAttention
    from ptv2_ds import dropout as fast_dropout

    if device != "cuda":
        return {}
    cfg = glm_config("glm-2b", 1)
    torch.manual_seed(0)
    B, S, P, heads, d = 4, 512, 16, cfg.num_attention_heads, cfg.head_dim
    attn = GLMSelfAttention(cfg).cuda().half().train().requires_grad_(False)
    x = torch.randn(B, S, cfg.hidden_size, device="cuda", dtype=torch.half)
    mask = torch.ones(B, 1, S, P + S, dtype=torch.bool, device="cuda")
    prefix = tuple(torch.randn(B, heads, P, d, device="cuda", dtype=torch.half,
                               requires_grad=True) for _ in range(2))
    q = torch.randn(B, heads, S, d, device="cuda", dtype=torch.half, requires_grad=True)
    kv = [torch.randn(B, heads, P + S, d, device="cuda", dtype=torch.half, requires_grad=True)
          for _ in range(2)]
    found = {}
    for name, fn in (("glm", lambda: attn(x, mask, prefix)),
                     ("hf", lambda: fast_dropout.attention(q, kv[0], kv[1], mask, 0.1, None))):
        fn().float().sum().backward()  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn().float().sum().backward()
            torch.cuda.synchronize()
        found[name] = sorted({e.key for e in prof.key_averages()
                              if any(k in e.key.lower() for k in
                                     ("flash", "fmha", "efficient", "attention", "softmax",
                                      "cutlass", "bmm", "gemm"))})[:12]
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    from benchmarks.gpu_check import flops_per_token, peak_tflops

    out = Path(args.out)
    cfg = glm_config(args.shape, args.layers)
    model_dir = out / f"{args.shape}{'' if args.layers is None else f'-{args.layers}l'}"
    print(f"writing a random {args.shape} checkpoint (hidden {cfg.hidden_size}, "
          f"{cfg.num_layers} layers) to {model_dir}", flush=True)
    write_checkpoint(cfg, model_dir, args.device)
    data = write_data(out / "data", args.seq, rows=args.batch * (args.steps + 2))
    peak = peak_tflops() if args.device == "cuda" else None
    results = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        r = train(method, model_dir, data, out / f"run_{method}", args)
        tokens = args.batch * args.seq
        flops = flops_per_token(cfg, args.seq, method) * tokens / r["step_s"]
        r.update(tokens_per_s=tokens / r["step_s"], model_tflops=flops / 1e12,
                 mfu=flops / 1e12 / peak if peak else None)
        results.append(r)
        print(f"{method:9s} step {r['step_s'] * 1e3:8.1f} ms  {r['tokens_per_s']:9.0f} tok/s  "
              f"{r['model_tflops']:7.1f} TFLOP/s"
              + (f"  MFU {100 * r['mfu']:.1f} %" if r["mfu"] else "")
              + (f"  GPU mem peak {r['gpu_mem_used_peak_mib']} MiB"
                 if r["gpu_mem_used_peak_mib"] else ""), flush=True)
    by = {r["method"]: r["step_s"] for r in results}
    if "ptv2" in by and "finetune" in by:
        print(f"ptv2 / finetune step time: {by['ptv2'] / by['finetune']:.2f}")
    kernels = attention_kernels(args.device)
    for name, names in kernels.items():
        print(f"prefix attention kernels ({name}): {', '.join(names) or 'none matched'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results,
                                               "attention_kernels": kernels}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
