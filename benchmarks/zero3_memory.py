"""Per-rank resident parameter bytes and peak memory under ZeRO-3 on CPU: 1 rank vs 2 ranks.

Builds a randomly initialised GLM (default: hidden 512, 12 layers, GPT-2 vocabulary, ~88M
parameters) in the hub layout, then runs the same `ptv2 train` (ptv2, SST-2 demo sample, a few
steps, ds_configs/cpu_zero3.json, fp32) as 1 process and as 2 DeepSpeed ranks, and reads each
run's OUT/zero_report.json (what every rank holds, read from the engine) and peak RSS.

    python benchmarks/zero3_memory.py [--hidden 512 --layers 12 --steps 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


def train(model: Path, out: Path, ranks: int, steps: int) -> dict:
    data = REPO / "examples" / "data" / "sst2"
    args = ["train", "--model", str(model), "--task", "sst2",
            "--train-file", str(data / "train.tsv"), "--validation-file", str(data / "dev.tsv"),
            "--max-train-samples", "256", "--output-dir", str(out),
            "--deepspeed", str(REPO / "ds_configs" / "cpu_zero3.json"), "--precision", "fp32",
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
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"run with {ranks} rank(s) failed:\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-2000:]}")
    return json.loads((out / "zero_report.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_model(tmp / "model", args.hidden, args.layers)
        reports = {n: train(tmp / "model", tmp / f"out{n}", n, args.steps) for n in (1, 2)}
    print(f"# {' '.join(sys.argv)}")
    total = reports[1]["backbone_params"]
    print(f"# GLM hidden {args.hidden} x {args.layers} layers: {total:,} frozen backbone "
          f"parameters, {reports[1]['trainable_params']:,} trainable; ZeRO-3, fp32, CPU")
    print(f"{'ranks':>5} {'rank':>4} {'frozen params held':>19} {'MiB held':>9} "
          f"{'share':>6} {'Adam m elements':>16} {'peak RSS MiB':>13}")
    for n, report in reports.items():
        for r in report["ranks"]:
            print(f"{n:5d} {r['rank']:4d} {r['frozen_local']:19,} "
                  f"{r['frozen_local'] * 4 / 2**20:9.1f} {r['frozen_local'] / total:6.3f} "
                  f"{r['adam_moment_elements']:16,} {r['peak_memory_bytes'] / 2**20:13.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
