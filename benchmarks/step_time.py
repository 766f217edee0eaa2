#!/usr/bin/env python
"""Training-step time and peak memory of finetune / prompt / ptv2 on one backbone and batch.

    python benchmarks/step_time.py                       # MiniLM, batch 32, 128 tokens, CPU
    python benchmarks/step_time.py --seq-len 64 --batch-size 16 --json out.json
    python benchmarks/step_time.py --device cuda --precision bf16 --steps 50
    python benchmarks/step_time.py --also-deepspeed      # + the same step through the engine

A step is what the trainer does per micro-batch, without DeepSpeed: forward, cross-entropy,
backward, AdamW over ``model.trainable_parameters()``, zero_grad. Every method sees the same
backbone, the same fixed batch and the same seed. Each method runs in a fresh subprocess of
this script (``--worker METHOD``), so peak memory is per method: ``ru_maxrss`` on CPU (which
cannot be reset inside a process), ``torch.cuda.max_memory_allocated`` on CUDA.

Expectation: a frozen backbone skips the weight-gradient half of the backward pass (and the
optimizer over the backbone), so ptv2/finetune should be about (1 + 1) / (1 + 2) = 0.67 when
forward : input-grad : weight-grad costs are 1 : 1 : 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

METHODS = ("finetune", "prompt", "ptv2")
RESULT_TAG = "@@STEP_TIME_RESULT "
READY_TAG = "@@STEP_TIME_READY "
STEP_TAG = "@@STEP_TIME_STEP "


# ---- command line ---------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm",
                   help="backbone for ptv2_ds.backbones.load_backbone: minilm, a directory, a "
                        "hub name or a GLM preset (default: minilm)")
    p.add_argument("--model-path", default=None, help="weights directory for a GLM preset")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    p.add_argument("--seq-len", type=int, default=128,
                   help="tokens per example, special tokens included (every example has "
                        "exactly this many; default: 128)")
    p.add_argument("--prefix-len", type=int, default=16,
                   help="prefix positions per layer (ptv2) / prompt tokens (prompt) "
                        "(default: 16)")
    p.add_argument("--data", choices=("random", "sst2"), default="random",
                   help="random: random non-special token ids, no padding; sst2: the first "
                        "BATCH rows of --sst2-file padded/truncated to --seq-len "
                        "(default: random)")
    p.add_argument("--sst2-file", default=str(REPO / "examples/data/sst2/train.tsv"),
                   help="SST-2 TSV for --data sst2 (default: examples/data/sst2/train.tsv)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (default: 10 on cpu, 50 on cuda)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed steps before timing (default: 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="bf16/fp16: torch.autocast (fp16 with a GradScaler); fp16 needs cuda "
                        "(default: fp32)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's default for this machine)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated subset of " + ",".join(METHODS) + " (default: all)")
    p.add_argument("--schedule", choices=("interleaved", "sequential"), default=None,
                   help="interleaved: every method's process stays alive and they take turns, "
                        "one step each (fair on a shared machine whose load drifts); "
                        "sequential: one method after the other (default on cuda, where all "
                        "models at once may not fit; default interleaved on cpu)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed (default: 0)")
    p.add_argument("--json", metavar="OUT.json", default=None, help="write the results here")
    p.add_argument("--also-deepspeed", action="store_true",
                   help="also time each method through deepspeed.initialize (engine overhead)")
    p.add_argument("--ds-config", default=str(REPO / "ds_configs/cpu.json"),
                   help="DeepSpeed config for --also-deepspeed, filled like the trainer does "
                        "(default: ds_configs/cpu.json)")
    p.add_argument("--no-dropout", action="store_true",
                   help="diagnostic: set every dropout probability to 0 (the trainer keeps "
                        "them; without dropout, CPU attention can take the fused SDPA kernel)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile 2 more steps per method with torch.profiler "
                        "and print the N ops with the most self time")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-deepspeed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        p.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if args.steps is None:
        args.steps = 10 if args.device == "cpu" else 50
    if args.schedule is None:
        args.schedule = "interleaved" if args.device == "cpu" else "sequential"
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.precision == "fp16" and args.device != "cuda":
        p.error("--precision fp16 needs --device cuda")
    if args.threads is None:
        import torch
        args.threads = torch.get_num_threads()
    return args


# ---- the worker: one method in one process --------------------------------------------------
def make_batch(backbone, args, generator):
    """A dict batch of exactly [B, seq_len] tokens plus labels, built with the adapter's own
    ``encode``/``collate``."""
    import torch
    import torch.nn.functional as F

    B, S = args.batch_size, args.seq_len
    if args.data == "random":
        # S non-special ids per row; encode() truncates them so that its special tokens fit
        tok = backbone.tokenizer
        special = set(tok.all_special_ids)
        features = []
        for _ in range(B):
            ids = []
            while len(ids) < S:
                draw = torch.randint(0, len(tok), (S,), generator=generator).tolist()
                ids += [i for i in draw if i not in special]
            features.append(backbone.encode(ids[:S], None, S))
        labels = torch.randint(0, 2, (B,), generator=generator)
    else:
        from ptv2_ds.tasks import build_task
        task = build_task("sst2")
        rows = task.read_file(args.sst2_file)
        if len(rows) < B:
            raise SystemExit(f"{args.sst2_file}: {len(rows)} rows, fewer than batch {B}")
        rows = rows[:B]
        features = [backbone.encode(backbone.encode_text(r.text_a), None, S) for r in rows]
        labels = torch.tensor([task.labels.index(r.label) for r in rows])
    batch = backbone.collate(features)
    width = batch["input_ids"].shape[1]
    if width < S:  # pad to exactly S (collate pads to the longest row only)
        pad_id = backbone.tokenizer.pad_token_id
        for key in ("input_ids", "attention_mask", "token_type_ids", "position_ids"):
            if key in batch and batch[key].shape[-1] == width:
                batch[key] = F.pad(batch[key], (0, S - width),
                                   value=pad_id if key == "input_ids" else 0)
    if batch["input_ids"].shape != (B, S):
        raise RuntimeError(f"batch shape {tuple(batch['input_ids'].shape)} != {(B, S)}")
    batch["labels"] = labels
    return batch


def run_worker(args) -> dict:
    method, use_ds = args.worker, args.worker_deepspeed
    if use_ds and args.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from ptv2_ds.backbones import load_backbone
    from ptv2_ds.builder import DEFAULT_LR
    from ptv2_ds.model import PromptedModel, PromptSettings

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    device = torch.device("cuda" if cuda else "cpu")
    backbone = load_backbone(args.model, model_path=args.model_path)
    model = PromptedModel(backbone, PromptSettings(method=method, prefix_len=args.prefix_len),
                          num_outputs=2)
    if args.no_dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    counts = model.parameter_counts()
    gen = torch.Generator().manual_seed(args.seed)
    batch = make_batch(backbone, args, gen)
    real_tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else None
    lr = DEFAULT_LR[method]

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = None
    engine = None
    if use_ds:
        import deepspeed
        from ptv2_ds.trainer.distributed import ensure_dist_env
        from ptv2_ds.trainer.ds_config import fill_ds_config, load_ds_config
        ensure_dist_env()
        ds_config = fill_ds_config(load_ds_config(args.ds_config), micro_batch=args.batch_size,
                                   grad_accum=1, world_size=1, lr=lr, weight_decay=0.0,
                                   precision=args.precision, tb_dir=None)
        trainable = model.trainable_parameters()
        optimizer = None
        if "optimizer" not in ds_config:
            optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
        engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=trainable,
                                                       optimizer=optimizer, config=ds_config)
        device = engine.device
        autocast_dtype = None  # the engine casts the model itself for bf16/fp16
        module = engine
    else:
        model.to(device)
        optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=0.0)
        if args.precision == "fp16":
            scaler = torch.amp.GradScaler("cuda")
        module = model
    model.train()
    batch = {k: v.to(device) for k, v in batch.items()}

    def forward():
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                logits = module(batch)
        else:
            logits = module(batch)
        return F.cross_entropy(logits.float(), batch["labels"])

    def backward(loss):
        if engine is not None:
            engine.backward(loss)
        elif scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()

    def opt_step():
        if engine is not None:
            engine.step()  # clips, steps and zeroes the gradients
        elif scaler is not None:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        else:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    if cuda:
        def clock():
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e

        def elapsed(a, b):
            return a.elapsed_time(b) / 1e3
    else:
        clock = time.perf_counter

        def elapsed(a, b):
            return b - a

    def step():
        c0 = time.process_time()
        t0 = clock()
        loss = forward()
        t1 = clock()
        backward(loss)
        t2 = clock()
        opt_step()
        t3 = clock()
        if cuda:
            torch.cuda.synchronize()
        cpu = time.process_time() - c0  # every thread of the process, so not wall time
        return loss.item(), (elapsed(t0, t1), elapsed(t1, t2), elapsed(t2, t3), elapsed(t0, t3),
                             cpu)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    resident = 0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()

    # The driver says what to do, one command a line on stdin, so that it can interleave the
    # steps of several methods' processes (each waits here while another one runs).
    losses, times, profile_text = [], [], None
    reply(READY_TAG, {"method": method})
    for line in sys.stdin:
        command = line.strip()
        if command in ("warmup", "step"):
            loss, t = step()
            losses.append(loss)
            if command == "step":
                times.append(t)
            reply(STEP_TAG, {"loss": loss, "step_s": t[3]})
        elif command == "profile":
            profile_text = profile_steps(step, cuda, args.profile)
            reply(STEP_TAG, {})
        elif command == "finish":
            break
        else:
            raise SystemExit(f"worker: unknown command {command!r}")
    if not times:
        raise SystemExit("worker: no timed steps")

    result = {
        "method": method, "deepspeed": use_ds, "lr": lr,
        "trainable_params": counts["trainable_params"],
        "backbone_params": counts["backbone_params"],
        "real_tokens": real_tokens,
        "step_s": [t[3] for t in times],
        "forward_s": [t[0] for t in times],
        "backward_s": [t[1] for t in times],
        "optimizer_s": [t[2] for t in times],
        "cpu_s": [t[4] for t in times],
        "first_loss": losses[0], "last_loss": losses[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_steps_mib": rss_before / 1024,
        "threads": torch.get_num_threads(),
    }
    if cuda:
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["cuda_resident_before_steps_mib"] = resident / 2**20
    if profile_text is not None:
        result["profile"] = profile_text
    return result


def reply(tag: str, payload: dict) -> None:
    print(tag + json.dumps(payload), flush=True)


def profile_steps(step, cuda: bool, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            with record_function("train_step"):
                step()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48)


# ---- the driver -----------------------------------------------------------------------------
def stats(values: list[float]) -> dict:
    v = sorted(values)
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": v[0], "max": v[-1]}


def worker_argv(args, method: str, use_ds: bool) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()),
            "--model", args.model, "--batch-size", str(args.batch_size),
            "--seq-len", str(args.seq_len), "--prefix-len", str(args.prefix_len),
            "--data", args.data, "--sst2-file", args.sst2_file,
            "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--device", args.device, "--precision", args.precision,
            "--threads", str(args.threads), "--seed", str(args.seed),
            "--ds-config", args.ds_config, "--profile", str(args.profile),
            "--worker", method]
    if args.no_dropout:
        argv.append("--no-dropout")
    if args.model_path:
        argv += ["--model-path", args.model_path]
    if use_ds:
        argv.append("--worker-deepspeed")
    return argv


class Worker:
    """One method in its own process (``--worker METHOD``), driven one command at a time."""

    def __init__(self, args, method: str, use_ds: bool):
        self.method, self.use_ds = method, use_ds
        self.name = method + (" (ds)" if use_ds else "")
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["OMP_NUM_THREADS"] = str(args.threads)
        env["MKL_NUM_THREADS"] = str(args.threads)
        if use_ds and args.device == "cpu":
            env.setdefault("DS_ACCELERATOR", "cpu")
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(worker_argv(args, method, use_ds), env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, bufsize=1)
        self.load = None

    def _read(self, tag: str) -> dict:
        skipped = []
        for line in self.proc.stdout:
            if line.startswith(tag):
                return json.loads(line[len(tag):])
            skipped.append(line)  # whatever else the worker printed (DeepSpeed logs)
        self.proc.wait()
        self.stderr.seek(0)
        sys.stderr.write("".join(skipped)[-4000:] + self.stderr.read()[-8000:])
        raise SystemExit(f"worker {self.name} failed (exit {self.proc.returncode})")

    def ready(self) -> None:
        self._read(READY_TAG)

    def send(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read(RESULT_TAG if command == "finish" else STEP_TAG)

    def finish(self) -> dict:
        result = self.send("finish")
        self.proc.wait()
        self.stderr.close()
        result["load1_at_start"] = self.load
        result["worker_wall_s"] = time.perf_counter() - self.t0
        return result


def run_methods(args, jobs: list[tuple[str, bool]]) -> list[dict]:
    """Run every (method, deepspeed?) job; interleaved: all processes alive and one step of
    each in turn (so load drift hits all methods alike); sequential: one process at a time."""
    def drive(workers: list[Worker]) -> list[dict]:
        for w in workers:
            w.ready()
        for _ in range(args.warmup):
            for w in workers:
                w.send("warmup")
        for w in workers:
            w.load = os.getloadavg()[0]
        for i in range(args.steps):
            for w in workers:
                w.send("step")
        if args.profile:
            for w in workers:
                w.send("profile")
        return [w.finish() for w in workers]

    if args.schedule == "interleaved":
        print("# starting " + ", ".join(m + (" (ds)" if d else "") for m, d in jobs)
              + " (interleaved) ...", file=sys.stderr, flush=True)
        workers = [Worker(args, m, d) for m, d in jobs]
        try:
            return drive(workers)
        finally:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
    results = []
    for m, d in jobs:
        print(f"# running {m}{' through deepspeed' if d else ''} ...", file=sys.stderr,
              flush=True)
        w = Worker(args, m, d)
        try:
            results += drive([w])
        finally:
            if w.proc.poll() is None:
                w.proc.kill()
    return results


def header(args) -> dict:
    import torch
    import transformers
    info = {
        "command": shlex.join([_python_name()] + sys.argv),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "device": args.device, "threads": args.threads, "precision": args.precision,
        "model": args.model, "batch_size": args.batch_size, "seq_len": args.seq_len,
        "prefix_len": args.prefix_len, "data": args.data, "warmup": args.warmup,
        "steps": args.steps, "schedule": args.schedule, "seed": args.seed,
        "dropout": not args.no_dropout,
        "python": platform.python_version(),
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(),
    }
    if args.device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    if args.also_deepspeed:
        import importlib.metadata as md
        info["deepspeed"] = md.version("deepspeed")
        info["ds_config"] = os.path.relpath(args.ds_config, REPO)
    return info


def _python_name() -> str:
    rel = os.path.relpath(sys.executable)
    return sys.executable if rel.startswith("..") else rel


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def print_header(info: dict) -> None:
    print(f"# {info['command']}")
    line = (f"# torch {info['torch']}, transformers {info['transformers']}, device "
            f"{info['device']}{' (' + info['gpu'] + ')' if 'gpu' in info else ''}, "
            f"{info['threads']} threads, {info['precision']}")
    if "deepspeed" in info:
        line += f", deepspeed {info['deepspeed']} ({info['ds_config']})"
    print(line)
    print(f"# {info['cpu']} ({info['cpu_count']} logical CPUs); load average at start "
          + " ".join(f"{x:.2f}" for x in info["loadavg_start"]))
    print(f"# model {info['model']}, batch {info['batch_size']} x {info['seq_len']} tokens "
          f"({info['data']}), prefix/prompt length {info['prefix_len']}, "
          f"{info['warmup']} warm-up + {info['steps']} timed steps ({info['schedule']}), "
          f"seed {info['seed']}"
          + ("" if info["dropout"] else ", dropout OFF (diagnostic)"))


def print_table(rows: list[dict], cuda: bool) -> None:
    mem = "peak CUDA MiB" if cuda else "peak RSS MiB"
    cols = ["method", "trainable", "step ms (median)", "IQR ms", "fwd ms", "bwd ms", "opt ms",
            "vs finetune"] + ([] if cuda else ["CPU ms", "CPU vs ft"]) + [mem, "load"]
    table = []
    for r in rows:
        st = r["stats"]
        table.append([
            r["method"] + (" (ds)" if r["deepspeed"] else ""),
            f"{r['trainable_params']:,}",
            f"{1e3 * st['step']['median']:.1f}",
            f"{1e3 * st['step']['iqr']:.1f}",
            f"{1e3 * st['forward']['median']:.1f}",
            f"{1e3 * st['backward']['median']:.1f}",
            f"{1e3 * st['optimizer']['median']:.1f}",
            "-" if r.get("ratio_to_finetune") is None else f"{r['ratio_to_finetune']:.2f}",
        ] + ([] if cuda else [
            f"{1e3 * st['cpu']['median']:.1f}",
            "-" if r.get("cpu_ratio_to_finetune") is None
            else f"{r['cpu_ratio_to_finetune']:.2f}",
        ]) + [
            f"{r['cuda_peak_mib'] if cuda else r['peak_rss_mib']:.0f}",
            f"{r['load1_at_start']:.2f}",
        ])
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in
                         enumerate(widths)) + "|")
    for t in table:
        print("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                for i, (v, w) in enumerate(zip(t, widths))) + " |")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        if args.worker not in METHODS:
            raise SystemExit(f"--worker must be one of {METHODS}")
        result = run_worker(args)
        reply(RESULT_TAG, result)
        return 0

    info = header(args)
    print_header(info)
    sys.stdout.flush()
    order = [m for m in METHODS if m in args.methods]  # finetune first: it is the reference
    engines = [False] + ([True] if args.also_deepspeed else [])
    rows = run_methods(args, [(m, d) for d in engines for m in order])
    for r in rows:
        r["stats"] = {k: stats(r[k + "_s"]) for k in ("step", "forward", "backward",
                                                       "optimizer", "cpu")}
    for r in rows:
        ref = next((x for x in rows if x["method"] == "finetune"
                    and x["deepspeed"] == r["deepspeed"]), None)
        r["ratio_to_finetune"] = (r["stats"]["step"]["median"] / ref["stats"]["step"]["median"]
                                  if ref is not None else None)
        r["cpu_ratio_to_finetune"] = (r["stats"]["cpu"]["median"] / ref["stats"]["cpu"]["median"]
                                      if ref is not None else None)
        plain = next((x for x in rows if x["method"] == r["method"] and not x["deepspeed"]),
                     None)
        if r["deepspeed"] and plain is not None:
            r["engine_overhead"] = (r["stats"]["step"]["median"]
                                    / plain["stats"]["step"]["median"])
    print()
    print_table(rows, args.device == "cuda")
    print()
    print("# vs finetune = median step time / finetune's median step time on the same engine "
          "(theory for a frozen backbone: ~0.67); load = 1-min load average when the method's "
          "timed steps began")
    if args.device == "cpu":
        print("# CPU ms = process CPU time per step (all threads; less sensitive than wall time "
              "to other jobs on the machine, but it counts OpenMP spin-waiting)")
    for r in rows:
        if "engine_overhead" in r:
            print(f"# deepspeed engine overhead, {r['method']}: x{r['engine_overhead']:.2f} "
                  "the plain step")
    info["loadavg_end"] = os.getloadavg()
    print("# load average at end " + " ".join(f"{x:.2f}" for x in info["loadavg_end"]))
    if args.profile:
        for r in rows:
            print(f"\n## profile: {r['method']}{' (ds)' if r['deepspeed'] else ''} "
                  "(2 steps)\n" + r["profile"])
    if args.json:
        out = {"header": info, "results": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
