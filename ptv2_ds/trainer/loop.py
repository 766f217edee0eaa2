"""The training recipe: one function, readable in one sitting.

config -> DeepSpeed config -> model (backbone + prompt + head; under ZeRO-3 the backbone is
built partitioned) -> task data -> DeepSpeed engine -> loop with periodic evaluation ->
metrics.json, artifact/, tb/, train_log.jsonl, checkpoints/.

Multi-task (``--tasks a,b``, MPT-2) is the same recipe with one shared prompt, one head per
task and a ``Mixture`` of the tasks' training sets (each batch from one set, the task order a
function of seed and epoch: ``tasks/mixture.py``); evaluation scores every task (``a/f1``,
...) and their ``mean``, which picks the best checkpoint. A single-task run is the mixture of
one task: the same batches in the same order as before multi-task training existed.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import recipes
from ..artifacts import StreamedArtifact, save_artifact
from ..inference import init_from_artifact
from ..prompts.init import check_prefix_init, init_prompt_from
from ..builder import build_model, learning_rate
from ..config import TrainArgs
from ..errors import UserError
from ..tasks import Task, build_task, load_splits
from ..tasks.mixture import Mixture, check_task_data, stack_metrics, task_files
from . import checkpointing
from . import distributed as dist_env
from .ds_config import fill_ds_config, load_ds_config, resolve_precision, zero_stage
from .evaluation import evaluate, predict
from .guards import (Preempted, StopFlags, TrainingDiverged, claim_output_dir,
                     loss_scale)
from .monitor import RunLog, gather_peak_memory, zero_report
from .schedule import lr_multiplier

CHECKPOINTS = "checkpoints"
MAX_CONSECUTIVE_SKIPS = 50  # fp16 overflow-skipped steps in a row before giving up


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def task_from_args(args, name: str | None = None) -> Task:
    """The task named by ``--task`` (or ``name``, one of ``--tasks``) with the run's family
    options (each family reads its own: the head choice, tagging columns, QA windows and answer
    rules)."""
    return build_task(name or args.task, head=args.head, template=args.template,
                      verbalizer=args.verbalizer, token_column=args.token_column,
                      tag_column=args.tag_column, doc_stride=args.doc_stride, n_best=args.n_best,
                      max_answer_len=args.max_answer_len, null_threshold=args.null_threshold)


def train(args: TrainArgs) -> dict:
    """Train one task (or, with ``args.tasks``, several sharing one prompt) with one method;
    returns the metrics written to OUT/metrics.json.

    Raises ``Preempted`` after checkpointing on SIGTERM/SIGUSR1 and ``TrainingDiverged`` when
    the loss goes non-finite (the CLI turns both into exit codes)."""
    # a ZeRO-3 engine replaces torch.nn.functional.linear for the whole process and never puts
    # it back; a caller that goes on in this process (a notebook, a test) gets the original
    linear = torch.nn.functional.linear
    try:
        return _Recipe(args).run()
    finally:
        torch.nn.functional.linear = linear


class _Recipe:
    """One training run in four parts, each readable on its own: ``__init__`` reads the tasks
    and data files (bad names, options and files fail there, before any process group or
    model), ``setup`` builds the DeepSpeed config, model, data and engine, and resumes;
    ``train_loop`` runs the optimizer steps with periodic evaluation and checkpoints;
    ``finish`` evaluates at the end, predicts the test sets and writes the reports. A new loss
    is a task's ``loss`` (``_micro_step``), a new per-step record a line in ``_after_step``."""

    def __init__(self, args: TrainArgs):
        self.args = args
        self.multi = args.tasks is not None
        self.names = list(args.tasks) if self.multi else [args.task]
        self.tasks: dict[str, Task] = {n: task_from_args(args, n) for n in self.names}
        self.splits: dict[str, dict] = {}
        for n, t in self.tasks.items():
            train_file, validation_file, test_file = task_files(args, n)
            check_task_data(t, train_file, self.multi)
            self.splits[n] = load_splits(t, train_file, validation_file, test_file,
                                         args.dev_fraction, args.seed,
                                         skip_bad_rows=args.skip_bad_rows)
        if args.init_prompt:
            from ..artifacts import read_meta

            read_meta(args.init_prompt)  # a missing or broken artifact fails before the model
        self.ds_file_config = load_ds_config(args.deepspeed)
        self.lock = None  # the run directory's lock (setup)
        self.main_key = "mean" if self.multi else self.tasks[self.names[0]].main_metric

    def run(self) -> dict:
        try:
            self.setup()
            self.train_loop()
            return self.finish()
        finally:
            if self.lock is not None:
                self.lock.close()

    # ---- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        args = self.args
        dist_env.ensure_dist_env()
        # one process per run directory: global rank 0 holds a lock on it until the run ends
        if os.environ["RANK"] == "0":
            self.lock = claim_output_dir(Path(args.output_dir))
        dist_env.prepare_cpu_collectives()
        dist_env.init_distributed()
        self.rank, self.world = dist_env.rank(), dist_env.world_size()
        self.main = self.rank == 0
        self.out = Path(args.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        set_seed(args.seed)
        self.flags = StopFlags()
        self._configure()
        self._build_model_and_data()
        self._build_engine()
        self._announce()

    def _configure(self) -> None:
        """The DeepSpeed config first: ZeRO-3 decides how the backbone is built."""
        args = self.args
        self.precision = resolve_precision(self.ds_file_config, args.precision)
        self.lr = learning_rate(args)
        self.ds_config = fill_ds_config(
            self.ds_file_config, micro_batch=args.batch_size, grad_accum=args.grad_accum,
            world_size=self.world, lr=self.lr, weight_decay=args.weight_decay,
            precision=self.precision, tb_dir=str(self.out / "tb"),
            quantize_frozen=args.quantize_frozen)
        self.stage = zero_stage(self.ds_config)
        # ZeRO-3 on CPU: per-rank memory falls with ranks only if freed gathers leave the
        # process (large blocks: a fixed mmap threshold; small ones: a heap trim after each
        # step, RESULTS)
        self.trim_heap = self.stage == 3 and dist_env.on_cpu()
        if self.trim_heap:
            dist_env.return_freed_memory_to_the_os()
        note = recipes.prefix_init_for_zero_stage(args, self.stage)
        if note and self.main:
            print(f"[ptv2] {note}")
        # what a checkpoint must share with this run to be resumed (checked before the model
        # is built, so a mismatch costs seconds)
        self.run_config = checkpointing.make_run_config(
            args, world_size=self.world, zero_stage=self.stage, lr=self.lr,
            precision=self.precision)
        checkpointing.check_resume(self.out / CHECKPOINTS, args.resume, self.run_config)
        check_prefix_init(args.prefix_init, args.method, args.reparam, args.prompt_encoder,
                          self.stage, init_prompt=args.init_prompt)

    def _build_model_and_data(self) -> None:
        args, tasks, names = self.args, self.tasks, self.names
        self.model = (build_model(args, tasks=tasks, ds_config=self.ds_config) if self.multi
                      else build_model(args, tasks[names[0]], ds_config=self.ds_config))
        self.model.backbone.fingerprint()  # collective under ZeRO-3; cached for the artifact
        if args.init_prompt:
            notes = init_from_artifact(self.model, args.init_prompt, tasks)
            if self.main:
                print(f"[ptv2] prompt loaded from --init-prompt {args.init_prompt}; "
                      + "; ".join(notes))
        self.counts = self.model.parameter_counts()
        self.backbone = backbone = self.model.backbone
        self.max_lens, self.train_rows, self.train_sets, self.dev_sets = {}, {}, {}, {}
        for n, t in tasks.items():
            self.max_lens[n] = min(args.max_seq_len or t.default_max_seq_len,
                                   backbone.max_positions)
            rows = self.splits[n]["train"]
            self.train_rows[n] = rows[: args.max_train_samples] if args.max_train_samples \
                else rows
            self.train_sets[n] = t.encode(self.train_rows[n], backbone, self.max_lens[n],
                                          show_progress=self.main)
            self.dev_sets[n] = t.encode(self.splits[n]["dev"], backbone, self.max_lens[n],
                                        show_progress=self.main)
        if args.prefix_init != "random":
            self._init_prompt()
        # each task's sampler seed and pass fix its data order, the mixture's seed and epoch
        # the order of the tasks; loaders get their own generators so that starting an epoch
        # does not draw from the global RNG (exact resume)
        self.mixture = Mixture(self.train_sets, tasks, backbone, args.batch_size,
                               world=self.world, rank=self.rank, seed=args.seed,
                               sampling=args.task_sampling)
        self.steps_per_epoch = max(1, math.ceil(len(self.mixture) / args.grad_accum))
        self.total_steps = args.max_steps or max(1, math.ceil(args.epochs
                                                              * self.steps_per_epoch))
        self.eval_every = args.eval_every or self.steps_per_epoch

    def _init_prompt(self) -> None:
        """``--prefix-init vocab/activations``: the prompt from the backbone's own keys/values
        (of the training inputs of every task, in order). A task default that the data cannot
        serve (too few different words for the prompt length) becomes random and says so; an
        explicit choice fails with the reason."""
        from deepspeed.accelerator import get_accelerator

        args = self.args
        try:
            note = init_prompt_from(self.model, args.prefix_init,
                                    [f for n in self.names for f in self.train_sets[n].features],
                                    args.seed, device=get_accelerator().current_device_name())
        except UserError as e:
            if not recipes.is_task_default(args, "prefix_init"):
                raise
            note = (f"prompt initialised N(0, 0.02), not from the task's default "
                    f"--prefix-init {args.prefix_init}: {e}")
            args.prefix_init = "random"
        if self.main:
            print(f"[ptv2] {note}")

    def _build_engine(self) -> None:
        """The DeepSpeed engine (only trainable parameters reach the optimizer), resumed from
        the newest checkpoint when asked, and the run's log."""
        import deepspeed

        args = self.args
        self.trainable = self.model.trainable_parameters()
        # multi-task: one parameter group per head, so that a step can leave the heads of the
        # tasks it did not train on untouched (``_freeze_idle_heads``)
        groups, self.head_groups = (_param_groups(self.model, self.trainable) if self.multi
                                    else (self.trainable, {}))
        optimizer = None
        if "optimizer" not in self.ds_config:
            optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=args.weight_decay)
        warmup = int(args.warmup_ratio * self.total_steps)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.model, model_parameters=groups, optimizer=optimizer,
            config=self.ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
                opt, lr_multiplier(args.lr_schedule, warmup_steps=warmup,
                                   total_steps=self.total_steps,
                                   steps_per_epoch=self.steps_per_epoch, decay=args.lr_decay)))
        self.device = self.engine.device
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None,
                      "best_step": None, "history": []}
        self.resumed_from = checkpointing.resume(self.engine, self.out / CHECKPOINTS,
                                                 args.resume, self.state, self.run_config)
        self.log = RunLog(self.out, self.state["step"] if self.resumed_from else None)
        counts = self.counts
        self.log.scalars({"params/trainable": counts["trainable_params"],
                          "params/backbone": counts["backbone_params"],
                          "params/trainable_ratio": counts["trainable_ratio"]}, 0)
        self.log.text("config", "```\n" + json.dumps(vars(args), indent=2) + "\n```")

    def _announce(self) -> None:
        if not self.main:
            return
        args, counts, names, multi = self.args, self.counts, self.names, self.multi
        print(f"[ptv2] task={','.join(names)} method={args.method} backbone={args.model} "
              f"precision={self.precision} world_size={self.world} zero_stage={self.stage}"
              + (f" backbone_dropout={args.backbone_dropout:g}"
                 if args.backbone_dropout is not None else ""))
        print(f"[ptv2] trainable {counts['trainable_params']:,} / backbone "
              f"{counts['backbone_params']:,} parameters ({100 * counts['trainable_ratio']:.3f}%)")
        for n in names:
            print(f"[ptv2] {f'{n}: ' if multi else ''}{len(self.train_rows[n])} train / "
                  f"{len(self.splits[n]['dev'])} dev examples ({len(self.train_sets[n])} / "
                  f"{len(self.dev_sets[n])} model inputs)"
                  + (f"; {self.mixture.counts[n]} of {len(self.mixture)} batches per epoch "
                     f"(--task-sampling {args.task_sampling})" if multi else ""))
        print(f"[ptv2] {self.total_steps} optimizer steps of "
              f"{args.batch_size * args.grad_accum * self.world} examples"
              + (f"; resumed from {self.resumed_from} at step {self.state['step']}"
                 if self.resumed_from else ""))
        idle = [n for n in names if self.mixture.counts[n] == 0]
        if idle:
            print(f"[ptv2] warning: --task-sampling {args.task_sampling} gives "
                  f"{', '.join(idle)} no batch in an epoch: they are not trained")

    # ---- evaluation and checkpoints ------------------------------------------------------
    def evaluate(self) -> dict:
        """Score every task's dev set at the current step; a new best writes the artifact."""
        state, tasks, multi = self.state, self.tasks, self.multi
        per_task = {}
        for n, t in tasks.items():
            per_task[n], _ = evaluate(self.engine, self.dev_sets[n], t, self.backbone,
                                      self.device, self.args.eval_batch_size,
                                      head=n if multi else None)
        metrics = (stack_metrics(per_task, {n: t.main_metric for n, t in tasks.items()})
                   if multi else per_task[self.names[0]])
        step, key = state["step"], self.main_key
        state["history"].append({"step": step, **metrics})
        improved = state["best"] is None or metrics[key] > state["best"][key]
        if improved:
            state["best"], state["best_step"] = dict(metrics), step
            _write_artifact(self.engine, self.model, self.args, tasks, self.max_lens,
                            self.precision, self.counts, self.out / "artifact")
        self.log.scalars({f"eval/{k}": v for k, v in metrics.items()}, step)
        if self.main:
            _write_metrics(self.out, self.args, self.names, key, self.counts, state,
                           final=None)
            shown = ([key] + [f"{n}/{t.main_metric}" for n, t in tasks.items()] if multi
                     else list(metrics)[:4])  # multi-task: the mean and each main metric
            tqdm.write(f"[ptv2] step {step}: " + ", ".join(
                f"{k}={metrics[k]:.4f}" for k in shown) + (" (best)" if improved else ""))
        return metrics

    def checkpoint(self) -> None:
        checkpointing.save(self.engine, self.out / CHECKPOINTS, self.state,
                           self.args.save_total_limit, self.run_config)

    # ---- the loop ------------------------------------------------------------------------
    def train_loop(self) -> None:
        args, state = self.args, self.state
        self.engine.train()
        self.bar = tqdm(total=self.total_steps, initial=state["step"], desc="train",
                        disable=not self.main, dynamic_ncols=True)
        self.window = {"loss": 0.0, "micro": 0, "samples": 0, "tokens": 0,
                       "t0": time.perf_counter()}
        self.step_losses: list[float] = []
        self.step_tasks: list[str] = []
        self.consecutive_skips = 0
        self.last_eval_step = state["step"] if self.resumed_from else -1
        try:
            while state["step"] < self.total_steps:
                if self.multi and self.world > 1:
                    _check_same_schedule(self.mixture.schedule(state["epoch"]), state["epoch"])
                # resuming inside an epoch starts after the batches already trained on
                for index, name, batch in self.mixture.epoch(state["epoch"],
                                                             state["batch_in_epoch"]):
                    preempt = self._micro_step(name, batch)
                    state["batch_in_epoch"] = index + 1
                    if self.engine.global_steps == state["step"]:
                        continue  # inside a gradient-accumulation cycle
                    self._after_step()
                    at_eval = (state["step"] % self.eval_every == 0
                               or state["step"] == self.total_steps)
                    if at_eval:
                        self.evaluate()
                        self.last_eval_step = state["step"]
                    saved = at_eval or bool(args.save_every
                                            and state["step"] % args.save_every == 0)
                    if saved:
                        self.checkpoint()
                    if preempt:
                        if not saved:
                            self.checkpoint()
                        raise Preempted(f"stopped by signal {self.flags.preempt_signal} after "
                                        f"step {state['step']}; checkpoint written, rerun the "
                                        "same command to resume")
                    if state["step"] >= self.total_steps:
                        break
                else:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
        finally:
            self.bar.close()
            self.log.close()
            self.flags.restore()

    def _micro_step(self, name: str, batch: dict) -> bool:
        """Forward, loss, backward and ``engine.step`` (which applies the optimizer at an
        accumulation boundary) on one micro-batch of task ``name``; returns whether any rank
        was asked to stop (preemption)."""
        engine, state = self.engine, self.state
        batch = {k: v.to(self.device) for k, v in batch.items()}
        outputs = engine(batch, task=name) if self.multi else engine(batch)
        loss = self.tasks[name].loss(outputs, batch)
        agreement = self.flags.agree(loss, batch["attention_mask"].sum())
        engine.backward(loss)
        # the one host read of this micro-step, after the backward is queued; a non-finite
        # loss stops the run here, before the optimizer step applies it
        preempt, not_finite, global_loss, tokens = agreement.result()
        if not_finite and not engine.fp16_enabled():
            raise TrainingDiverged(
                f"the training loss is {loss.item()} at step {state['step'] + 1} "
                f"({self.precision}); stopped before applying it. The last good checkpoint "
                f"is in {self.out / CHECKPOINTS}; lower --lr or use fp32/bf16.")
        boundary = engine.is_gradient_accumulation_boundary()
        # gradient norms cost a device read: only for the steps that are logged
        self.logged = boundary and _logged_step(state["step"] + 1, self.args.log_every,
                                                self.total_steps)
        self.boundary_norm = _local_grad_norm(self.trainable) if self.logged else None
        self.step_tasks.append(name)
        if boundary and self.head_groups:
            _freeze_idle_heads(self.optimizer, self.head_groups, set(self.step_tasks))
        try:
            engine.step()
        except Exception as e:  # DeepSpeed raises a bare Exception at the scale floor
            if "loss scale" not in str(e).lower():
                raise
            raise TrainingDiverged(
                f"{e} (step {state['step'] + 1}); the last good checkpoint is in "
                f"{self.out / CHECKPOINTS}. Lower --lr or use bf16.") from None
        if boundary and self.head_groups:
            _thaw_heads(self.optimizer, self.head_groups)
        self.step_losses.append(global_loss)
        window = self.window
        window["micro"] += 1
        window["samples"] += batch["input_ids"].shape[0] * self.world
        window["tokens"] += tokens
        return preempt

    def _after_step(self) -> None:
        """Bookkeeping of an applied (or fp16-skipped) optimizer step: the step's line in
        train_log.jsonl, the skip guard and, every ``--log-every`` steps, the TensorBoard
        scalars."""
        engine, state, window = self.engine, self.state, self.window
        state["step"] = engine.global_steps
        if self.trim_heap:
            dist_env.release_free_heap()
        self.bar.update(1)
        self.consecutive_skips = 0 if engine.was_step_applied() else self.consecutive_skips + 1
        step_loss = sum(self.step_losses) / len(self.step_losses)
        self.step_losses.clear()
        window["loss"] += step_loss
        record = {"step": state["step"], "loss": step_loss,
                  "lr": self.scheduler.get_last_lr()[0], "loss_scale": loss_scale(engine),
                  "skipped_steps": engine.skipped_steps,
                  "grad_norm": _grad_norm(engine, self.boundary_norm) if self.logged else None,
                  "time": round(time.time(), 3)}  # wall clock, for step rates
        if self.multi:  # the task(s) of this step's micro-batches
            record["task"] = ",".join(dict.fromkeys(self.step_tasks))
            if len(set(self.step_tasks)) == 1:
                self.log.scalars({f"train/loss/{self.step_tasks[0]}": step_loss},
                                 state["step"])
        self.step_tasks.clear()
        self.log.step_line(record)
        if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise TrainingDiverged(
                f"{self.consecutive_skips} optimizer steps in a row were skipped for fp16 "
                f"overflow (loss scale {record['loss_scale']}); the last good checkpoint is "
                f"in {self.out / CHECKPOINTS}. Lower --lr or use bf16.")
        if not self.logged:
            return
        memory = gather_peak_memory(self.device)  # collective
        elapsed = time.perf_counter() - window["t0"]
        steps_in_window = max(1, window["micro"] / self.args.grad_accum)
        self.log.scalars({
            "train/loss": window["loss"] / steps_in_window,
            "train/lr": record["lr"],
            "train/loss_scale": record["loss_scale"],
            "train/skipped_steps": record["skipped_steps"],
            "train/prompt_grad_norm": record["grad_norm"],
            "perf/samples_per_s": window["samples"] / elapsed,
            "perf/tokens_per_s": window["tokens"] / elapsed,
            **{f"memory/rank{r}_peak_gib": m / 2**30 for r, m in enumerate(memory)},
        }, state["step"])
        self.bar.set_postfix(loss=f"{window['loss'] / steps_in_window:.4f}",
                             lr=f"{record['lr']:.2e}")
        window.update(loss=0.0, micro=0, samples=0, tokens=0, t0=time.perf_counter())

    # ---- the end -------------------------------------------------------------------------
    def finish(self) -> dict:
        """The final evaluation (unless the last step had one), test-set predictions, the
        ZeRO report and OUT/metrics.json."""
        state, main, out = self.state, self.main, self.out
        final = (dict(state["history"][-1]) if self.last_eval_step == state["step"]
                 else self.evaluate())
        final.pop("step", None)
        for n, t in self.tasks.items():
            if "test" not in self.splits[n]:
                continue
            test_set = t.encode(self.splits[n]["test"], self.backbone, self.max_lens[n])
            predictions = predict(self.engine, test_set, t, self.backbone, self.device,
                                  self.args.eval_batch_size, head=n if self.multi else None)
            if main:  # OUT/test_predictions.jsonl; multi-task: OUT/test_<task>_predictions.jsonl
                t.write_predictions(
                    out / ("test_" + (f"{n}_" if self.multi else "") + t.prediction_file),
                    predictions, self.splits[n]["test"])
        report = zero_report(self.engine, self.model, self.device)  # collective
        if not main:
            return {}
        result = _write_metrics(out, self.args, self.names, self.main_key, self.counts, state,
                                final)
        (out / "zero_report.json").write_text(json.dumps(
            {"zero_stage": self.stage, "world_size": self.world, **self.counts,
             "ranks": report}, indent=2))
        print(f"[ptv2] best {self.main_key} {state['best'][self.main_key]:.4f} at step "
              f"{state['best_step']}; metrics: {out / 'metrics.json'}; artifact: "
              f"{out / 'artifact'}; TensorBoard: tensorboard --logdir {out / 'tb'}")
        return result


# ---- helpers -------------------------------------------------------------------------------
def _param_groups(model, trainable: list) -> tuple[list[dict], dict[str, int]]:
    """Optimizer groups of a multi-task model: the shared parameters (the prompt; for finetune
    the backbone) first, then one group per head; and task name -> its head's group."""
    groups, head_groups, in_heads = [], {}, set()
    for name, head in model.heads.items():
        params = [p for p in head.parameters() if p.requires_grad]
        in_heads.update(id(p) for p in params)
        if params:
            head_groups[name] = len(groups) + 1
            groups.append({"params": params})
    shared = [p for p in trainable if id(p) not in in_heads]
    return [{"params": shared}] + groups, head_groups


def _freeze_idle_heads(optimizer, head_groups: dict[str, int], active: set[str]) -> None:
    """Learning rate 0 for the heads of tasks without a batch in this optimizer step: their
    parameters stay exactly as they are (under ZeRO or several ranks an unused parameter gets a
    zero gradient, not none, and Adam's momentum alone would still move it)."""
    for name, index in head_groups.items():
        if name not in active:
            optimizer.param_groups[index]["lr"] = 0.0


def _thaw_heads(optimizer, head_groups: dict[str, int]) -> None:
    """Every head group back at the shared group's rate (the schedule is the same for all;
    the scheduler has already stepped unless the step was skipped)."""
    lr = optimizer.param_groups[0]["lr"]
    for index in head_groups.values():
        optimizer.param_groups[index]["lr"] = lr


def _check_same_schedule(schedule: list[str], epoch: int) -> None:
    """Every rank must train on the same task in each step (one head's gradients reduced
    together); the schedule is a function of seed and epoch, and this makes sure of it."""
    shares: list = [None] * dist_env.world_size()
    torch.distributed.all_gather_object(shares, schedule)
    if any(s != schedule for s in shares):
        raise RuntimeError(f"epoch {epoch}: the ranks' task schedules differ (the training "
                           "sets must be the same on every rank)")


def _logged_step(step: int, log_every: int, total_steps: int) -> bool:
    """Optimizer step ``step`` writes the training scalars (and reads the gradient norm)."""
    return step % log_every == 0 or step == total_steps


def _local_grad_norm(params) -> float | None:
    """L2 norm of the gradients held in ``p.grad`` (None when ZeRO partitions them away)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])))


def _grad_norm(engine, fallback: float | None) -> float | None:
    """Norm of the trainable (prompt/head) gradients of the last step: DeepSpeed's own value
    where its optimizer computes one (ZeRO, fp16/bf16), else the norm read before the step."""
    norm = engine.get_global_grad_norm()
    if norm is None:
        return fallback
    return float(norm.item() if torch.is_tensor(norm) else norm)


def _write_metrics(out: Path, args, names: list[str], main_key: str, counts: dict, state: dict,
                   final: dict | None) -> dict:
    """OUT/metrics.json. Multi-task: ``task`` is the comma-joined names, ``tasks`` the list,
    metrics are ``task/metric`` plus ``mean`` (``main_metric``, which picks the best)."""
    best = dict(state["best"] or {})
    best["step"] = state["best_step"]
    multi = {"tasks": names, "main_metric": main_key} if args.tasks is not None else {}
    result = {"task": ",".join(names), **multi, "method": args.method, "best": best,
              "final": ({**final, "step": state["step"]} if final is not None else None),
              **counts, "history": state["history"]}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out / "metrics.json")
    return result


def _write_artifact(engine, model, args, tasks: dict[str, Task], max_lens: dict[str, int],
                    precision: str, counts: dict, directory: Path) -> None:
    """Gather prompt/head tensors (every rank takes part under ZeRO-3) and write on rank 0.

    ``finetune`` under ZeRO-3 holds the whole model: its parameters are gathered and written
    one at a time (``StreamedArtifact``), so no rank ever holds a second full copy."""
    import deepspeed

    main = dist_env.is_main()
    meta = _artifact_meta(model, args, tasks, max_lens, precision, counts) if main else None
    if args.method == "finetune" and engine.zero_optimization_stage() == 3:
        sources = model.artifact_sources()
        specs = [(name, tuple(getattr(t, "ds_shape", t.shape)), t.dtype)
                 for name, t in sources.items()]
        writer = StreamedArtifact(directory, specs, meta) if main else None
        for name, tensor in sources.items():
            with deepspeed.zero.GatheredParameters([tensor], enabled=hasattr(tensor, "ds_id")):
                if writer is not None:
                    writer.add(name, tensor.data)
        if writer is not None:
            writer.close()
        return
    params = model.trainable_parameters() if args.method != "finetune" else list(model.parameters())
    with deepspeed.zero.GatheredParameters(params, enabled=engine.zero_optimization_stage() == 3):
        tensors = model.artifact_state() if main else None
    if main:
        save_artifact(directory, tensors, meta)


def _artifact_meta(model, args, tasks: dict[str, Task], max_lens: dict[str, int],
                   precision: str, counts: dict) -> dict:
    """What ``ptv2 eval``/``predict`` need to rebuild the model and the task (multi-task: each
    task's part under ``task_meta``, see ``artifacts``)."""
    s = model.settings
    deep = model.deep_prompt

    def task_meta(name: str, task: Task) -> dict:
        options = task.options()
        return {"task": task.name, "family": task.family, "task_options": options,
                "labels": list(task.labels),
                "head": {"type": args.head, "verbalizer": options.get("verbalizer"),
                         "dropout": args.head_dropout},
                "template": options.get("template"), "max_seq_len": max_lens[name]}

    shared = {
        "method": s.method,
        "prompt": {"prefix_len": s.prefix_len, "trained_reparam": s.reparam,
                   "stored_as": "embedding", "prefix_hidden": s.prefix_hidden,
                   "prefix_dropout": s.prefix_dropout,
                   "prefix_layers": list(deep.layers) if deep is not None else [],
                   "prompt_encoder": s.prompt_encoder},
        "precision": precision,
        "backbone": {**model.backbone.describe(), "model": args.model,
                     "model_path": args.model_path},
        **counts,
    }
    if args.tasks is None:
        (name, task), = tasks.items()
        one = task_meta(name, task)
        # the single-task layout, key order included, as before multi-task artifacts
        return {**{k: one[k] for k in ("task", "family", "task_options", "labels")},
                "method": shared["method"], "prompt": shared["prompt"], "head": one["head"],
                "template": one["template"], "max_seq_len": one["max_seq_len"],
                **{k: v for k, v in shared.items() if k not in ("method", "prompt")}}
    return {"multitask": True, "tasks": list(tasks),
            "task_meta": {n: task_meta(n, t) for n, t in tasks.items()}, **shared}
