"""The training recipe: one function, readable in one sitting.

config -> task data -> model (backbone + prompt + head) -> DeepSpeed engine -> train loop with
periodic evaluation -> metrics.json, artifact/, tb/, checkpoints/.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from ..artifacts import save_artifact
from ..builder import DEFAULT_LR, build_model, cloze_template
from ..config import TrainArgs
from ..tasks import encode_examples, get_task, load_splits, make_loader
from . import distributed as dist_env
from .ds_config import fill_ds_config, load_ds_config, resolve_precision, zero_stage
from .evaluation import evaluate, predict_logits

CHECKPOINTS = "checkpoints"


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def linear_schedule(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up to 1 over ``warmup_steps``, then linear decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def train(args: TrainArgs) -> dict:
    """Train one task with one method; returns the metrics written to OUT/metrics.json."""
    dist_env.ensure_dist_env()
    import deepspeed

    deepspeed.init_distributed()
    rank, world = dist_env.rank(), dist_env.world_size()
    main = rank == 0
    out = Path(args.output_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed)

    # ---- task data and model -----------------------------------------------------------
    task = get_task(args.task)
    ds_file_config = load_ds_config(args.deepspeed)
    precision = resolve_precision(ds_file_config, args.precision)
    model = build_model(args, task)
    template = cloze_template(args, task)
    splits = load_splits(task, args.train_file, args.validation_file, args.test_file,
                         args.dev_fraction, args.seed)
    train_rows = splits["train"][: args.max_train_samples] if args.max_train_samples \
        else splits["train"]
    train_set = encode_examples(train_rows, task, model.backbone, args.max_seq_len, template,
                                show_progress=main)
    dev_set = encode_examples(splits["dev"], task, model.backbone, args.max_seq_len, template,
                              show_progress=main)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=args.seed)
    train_loader = make_loader(train_set, model.backbone, args.batch_size, sampler=sampler)
    dev_loader = make_loader(dev_set, model.backbone, args.eval_batch_size)

    steps_per_epoch = max(1, math.ceil(len(train_loader) / args.grad_accum))
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    eval_every = args.eval_every or steps_per_epoch
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.method]
    counts = model.parameter_counts()

    # ---- DeepSpeed engine: only trainable parameters reach the optimizer ---------------
    tb_dir = out / "tb"
    ds_config = fill_ds_config(ds_file_config, micro_batch=args.batch_size,
                               grad_accum=args.grad_accum, world_size=world, lr=lr,
                               weight_decay=args.weight_decay, precision=precision,
                               tb_dir=str(tb_dir))
    trainable = model.trainable_parameters()
    optimizer = None
    if "optimizer" not in ds_config:
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=args.weight_decay)
    warmup = int(args.warmup_ratio * total_steps)
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=trainable, optimizer=optimizer, config=ds_config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, linear_schedule(warmup, total_steps)))
    device = engine.device

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None,
             "history": []}
    resumed_from = _maybe_resume(engine, out / CHECKPOINTS, args.resume, state)

    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(tb_dir / "ptv2_ds"))
        writer.add_scalar("params/trainable", counts["trainable_params"], 0)
        writer.add_scalar("params/backbone", counts["backbone_params"], 0)
        writer.add_scalar("params/trainable_ratio", counts["trainable_ratio"], 0)
        writer.add_text("config", "```\n" + json.dumps(vars(args), indent=2) + "\n```", 0)
        print(f"[ptv2] task={task.name} method={args.method} backbone={args.model} "
              f"precision={precision} world_size={world} zero_stage={zero_stage(ds_config)}")
        print(f"[ptv2] trainable {counts['trainable_params']:,} / backbone "
              f"{counts['backbone_params']:,} parameters ({100 * counts['trainable_ratio']:.3f}%)")
        print(f"[ptv2] {len(train_set)} train / {len(dev_set)} dev examples; {total_steps} "
              f"optimizer steps of {args.batch_size * args.grad_accum * world} examples"
              + (f"; resumed from {resumed_from} at step {state['step']}" if resumed_from else ""))

    def run_eval() -> dict:
        metrics = evaluate(engine, dev_loader, task, device, show_progress=False)
        step = state["step"]
        state["history"].append({"step": step, **metrics})
        score = metrics[task.main_metric]
        improved = state["best"] is None or score > state["best"][task.main_metric]
        if improved:
            state["best"], state["best_step"] = dict(metrics), step
            _write_artifact(engine, model, args, task, out / "artifact")
        if main:
            for name, value in metrics.items():
                writer.add_scalar(f"eval/{name}", value, step)
            _write_metrics(out, args, task, counts, state, final=None)
            tqdm.write(f"[ptv2] step {step}: " + ", ".join(
                f"{k}={v:.4f}" for k, v in metrics.items()) + (" (best)" if improved else ""))
        return metrics

    # ---- the loop ------------------------------------------------------------------------
    engine.train()
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", disable=not main,
               dynamic_ncols=True)
    window = {"loss": 0.0, "micro": 0, "samples": 0, "tokens": 0, "t0": time.perf_counter()}
    last_eval_step = state["step"] if resumed_from else -1
    while state["step"] < total_steps:
        sampler.set_epoch(state["epoch"])
        for index, batch in enumerate(train_loader):
            if index < state["batch_in_epoch"]:
                continue  # resuming inside an epoch: skip the batches already trained on
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = engine(batch)
            loss = F.cross_entropy(logits.float(), batch["labels"])
            engine.backward(loss)
            engine.step()
            state["batch_in_epoch"] = index + 1
            window["loss"] += loss.item()
            window["micro"] += 1
            window["samples"] += batch["input_ids"].shape[0] * world
            window["tokens"] += int(batch["attention_mask"].sum()) * world
            if engine.global_steps == state["step"]:
                continue  # inside a gradient-accumulation cycle
            state["step"] = engine.global_steps
            bar.update(1)
            if main and (state["step"] % args.log_every == 0 or state["step"] == total_steps):
                elapsed = time.perf_counter() - window["t0"]
                mean_loss = window["loss"] / max(1, window["micro"])
                current_lr = scheduler.get_last_lr()[0]
                writer.add_scalar("train/loss", mean_loss, state["step"])
                writer.add_scalar("train/lr", current_lr, state["step"])
                writer.add_scalar("perf/samples_per_s", window["samples"] / elapsed, state["step"])
                writer.add_scalar("perf/tokens_per_s", window["tokens"] / elapsed, state["step"])
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{current_lr:.2e}")
                window.update(loss=0.0, micro=0, samples=0, tokens=0, t0=time.perf_counter())
            if state["step"] % eval_every == 0 or state["step"] == total_steps:
                run_eval()
                last_eval_step = state["step"]
                _save_checkpoint(engine, out / CHECKPOINTS, state, args.save_total_limit)
            if state["step"] >= total_steps:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    bar.close()

    final = dict(state["history"][-1]) if last_eval_step == state["step"] else run_eval()
    final.pop("step", None)
    if args.test_file and main:
        _predict_test(engine, splits["test"], task, model.backbone, args, template, device,
                      out / "test_predictions.jsonl")
    result = _write_metrics(out, args, task, counts, state, final) if main else {}
    if writer is not None:
        writer.close()
    if main:
        print(f"[ptv2] best {task.main_metric} {state['best'][task.main_metric]:.4f} at step "
              f"{state['best_step']}; metrics: {out / 'metrics.json'}; artifact: "
              f"{out / 'artifact'}; TensorBoard: tensorboard --logdir {tb_dir}")
    return result


# ---- helpers -------------------------------------------------------------------------------
def _write_metrics(out: Path, args, task, counts: dict, state: dict, final: dict | None) -> dict:
    best = dict(state["best"] or {})
    best["step"] = state["best_step"]
    result = {"task": task.name, "method": args.method, "best": best,
              "final": ({**final, "step": state["step"]} if final is not None else None),
              **counts, "history": state["history"]}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out / "metrics.json")
    return result


def _write_artifact(engine, model, args, task, directory: Path) -> None:
    """Gather prompt/head tensors (every rank takes part under ZeRO-3) and write on rank 0."""
    import deepspeed

    params = model.trainable_parameters() if args.method != "finetune" else list(model.parameters())
    with deepspeed.zero.GatheredParameters(params, enabled=engine.zero_optimization_stage() == 3):
        tensors = model.artifact_state() if dist_env.is_main() else None
    if not dist_env.is_main():
        return
    s = model.settings
    deep = model.deep_prompt
    meta = {
        "task": task.name,
        "labels": list(task.labels),
        "method": s.method,
        "prompt": {"prefix_len": s.prefix_len, "trained_reparam": s.reparam,
                   "stored_as": "embedding", "prefix_hidden": s.prefix_hidden,
                   "prefix_dropout": s.prefix_dropout,
                   "prefix_layers": list(deep.layers) if deep is not None else [],
                   "prompt_encoder": s.prompt_encoder},
        "head": {"type": args.head, "verbalizer": args.verbalizer, "dropout": args.head_dropout},
        "template": cloze_template(args, task),
        "max_seq_len": args.max_seq_len,
        "backbone": {**model.backbone.describe(), "model": args.model,
                     "model_path": args.model_path},
        **model.parameter_counts(),
    }
    save_artifact(directory, tensors, meta)


def _save_checkpoint(engine, directory: Path, state: dict, keep: int) -> None:
    """A resumable checkpoint of the trainable state (frozen weights excluded), all ranks."""
    client = {"state": state, "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                      "torch": torch.get_rng_state()}}
    tag = f"step{state['step']}"
    engine.save_checkpoint(str(directory), tag=tag, client_state=client,
                           exclude_frozen_parameters=True)
    if dist_env.is_main() and keep > 0:
        tags = sorted((p for p in directory.glob("step*") if p.is_dir()),
                      key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1)
        for old in tags[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _maybe_resume(engine, directory: Path, resume: str, state: dict) -> str | None:
    if resume == "none":
        return None
    if resume == "auto":
        if not (directory / "latest").is_file():
            return None
        load_dir, tag = directory, None
    else:
        path = Path(resume)
        if not path.is_dir():
            raise SystemExit(f"error: --resume {resume}: no such checkpoint directory")
        load_dir, tag = path.parent, path.name
    path, client = engine.load_checkpoint(str(load_dir), tag=tag, load_module_strict=False)
    if path is None or client is None:
        raise SystemExit(f"error: could not load a checkpoint from {load_dir}")
    state.update(client["state"])
    random.setstate(client["rng"]["python"])
    np.random.set_state(client["rng"]["numpy"])
    torch.set_rng_state(client["rng"]["torch"])
    return path


def _predict_test(engine, rows, task, backbone, args, template, device, path: Path) -> None:
    data = encode_examples(rows, task, backbone, args.max_seq_len, template, show_progress=False)
    logits, _ = predict_logits(engine, make_loader(data, backbone, args.eval_batch_size), device)
    with path.open("w") as f:
        for row_logits in logits:
            f.write(json.dumps({"label": task.labels[int(row_logits.argmax())],
                                "scores": row_logits.tolist()}) + "\n")
