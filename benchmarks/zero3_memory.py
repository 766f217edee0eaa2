"""Per-rank resident parameter bytes and peak memory under ZeRO-3 on CPU: 1 rank vs 2 ranks.

Builds a randomly initialised GLM (default: hidden 512, 12 layers, GPT-2 vocabulary, ~88M
parameters) in the hub layout, then runs the same `ptv2 train` (ptv2, SST-2 demo sample, a few
steps, ds_configs/cpu_zero3.json, fp32) as 1 process and as 2 DeepSpeed ranks, and reads each
run's OUT/zero_report.json (what every rank holds, read from the engine), peak RSS, and the
peak unique memory (USS: pages no other process shares, sampled with psutil every 0.2 s)
of each rank.

    python benchmarks/zero3_memory.py [--hidden 512 --layers 12 --steps 4]
    python benchmarks/zero3_memory.py --hidden 1024 --layers 24 --steps 2   # GLM-Large shape
    python benchmarks/zero3_memory.py --ds-config my_zero3.json            # another config
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build_model(directory: Path, hidden: int, layers: int) -> None:
    import torch
    from safetensors.torch import save_file

    from glm.config import GLMConfig
    from glm.model import GLMModel

    config = GLMConfig(vocab_size=50304, hidden_size=hidden, num_layers=layers,
                       num_attention_heads=max(1, hidden // 64), max_position_embeddings=128,
                       tokenizer="gpt2")
    torch.manual_seed(0)
    model = GLMModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config.to_dict()))


SERIES: dict[int, list] = {}  # rank -> [(seconds since start, USS MiB)] of the last run
START = [0.0]


def sample_uss(proc, peaks: dict, ranks: int) -> None:
    """Record the peak USS of every training process under ``proc`` by its RANK (with
    several ranks, DeepSpeed's launcher processes also name the module but have no RANK)."""
    import psutil

    for child in [proc, *proc.children(recursive=True)]:
        try:
            if "ptv2_ds.cli.main" not in " ".join(child.cmdline()):
                continue
            env = child.environ()
            if ranks > 1 and "RANK" not in env:
                continue
            rank = int(env.get("RANK", "0"))
            uss = child.memory_full_info().uss
            peaks[rank] = max(peaks.get(rank, 0), uss)
            SERIES.setdefault(rank, []).append((round(time.time() - START[0], 1), uss >> 20))
        except (psutil.Error, ValueError):
            continue


def train(model: Path, out: Path, ranks: int, steps: int, ds_config: str) -> dict:
    data = REPO / "examples" / "data" / "sst2"
    args = ["train", "--model", str(model), "--task", "sst2",
            "--train-file", str(data / "train.tsv"), "--validation-file", str(data / "dev.tsv"),
            "--max-train-samples", "256", "--output-dir", str(out),
            "--deepspeed", ds_config, "--precision", "fp32",
            "--batch-size", str(8 // ranks), "--max-seq-len", "64", "--max-steps", str(steps),
            "--eval-every", str(steps), "--resume", "none"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // ranks))}
    if ranks == 1:
        cmd = [sys.executable, "-m", "ptv2_ds.cli.main", *args]
    else:
        from ptv2_ds.trainer.distributed import free_port
        cmd = [str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", str(ranks),
               "--master_port", str(free_port()), "--module", "ptv2_ds.cli.main", *args]
    import psutil

    log = out.with_suffix(".log")
    with log.open("w") as sink:
        proc = psutil.Popen(cmd, env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        peaks: dict[int, int] = {}
        SERIES.clear()
        START[0] = time.time()
        while proc.poll() is None:
            sample_uss(proc, peaks, ranks)
            time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"run with {ranks} rank(s) failed:\n{log.read_text()[-3000:]}")
    report = json.loads((out / "zero_report.json").read_text())
    for r in report["ranks"]:
        r["peak_uss_bytes"] = peaks.get(r["rank"], 0)
        r["uss_mib_series"] = SERIES.get(r["rank"], [])
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--ds-config", default=str(REPO / "ds_configs" / "cpu_zero3.json"))
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts to run")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_model(tmp / "model", args.hidden, args.layers)
        reports = {n: train(tmp / "model", tmp / f"out{n}", n, args.steps,
                                 args.ds_config) for n in
                   [int(r) for r in args.ranks.split(",")]}
    print(f"# {' '.join(sys.argv)}")
    first = next(iter(reports.values()))
    total = first["backbone_params"]
    print(f"# GLM hidden {args.hidden} x {args.layers} layers: {total:,} frozen backbone "
          f"parameters, {first['trainable_params']:,} trainable; ZeRO-3, fp32, CPU")
    print(f"{'ranks':>5} {'rank':>4} {'frozen params held':>19} {'MiB held':>9} "
          f"{'share':>6} {'Adam m elements':>16} {'peak RSS MiB':>13} {'peak USS MiB':>13}")
    for n, report in reports.items():
        for r in report["ranks"]:
            print(f"{n:5d} {r['rank']:4d} {r['frozen_local']:19,} "
                  f"{r['frozen_local'] * 4 / 2**20:9.1f} {r['frozen_local'] / total:6.3f} "
                  f"{r['adam_moment_elements']:16,} {r['peak_memory_bytes'] / 2**20:13.0f} "
                  f"{r['peak_uss_bytes'] / 2**20:13.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
