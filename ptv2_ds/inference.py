"""Rebuild a trained model from an artifact for ``ptv2 eval`` / ``ptv2 predict``."""
from __future__ import annotations

import sys

import torch

from .artifacts import artifact_tasks, is_multitask, load_artifact, task_view
from .builder import build_model
from .config import ModelArgs
from .errors import UserError
from .tasks import Task, build_task


def task_from_meta(meta: dict, name: str | None = None, source: str = "the artifact",
                   **overrides) -> Task:
    """The artifact's task (or ``name``, which must have the same labels), with the options it
    was trained with, except ``overrides`` that are not None (e.g. ``null_threshold``).
    Artifacts written before task families existed hold the classification options (head,
    template, verbalizer) at the top level. A multi-task artifact needs ``name``, one of its
    tasks (UserError otherwise)."""
    meta, _ = task_view(meta, None, name, source)
    options = meta.get("task_options")
    if options is None:
        options = {"head": meta["head"]["type"], "template": meta.get("template"),
                   "verbalizer": meta["head"].get("verbalizer")}
    options = {**options, **{k: v for k, v in overrides.items() if v is not None}}
    task = build_task(name or meta["task"], **options)
    if list(task.labels) != meta["labels"]:
        raise SystemExit(f"error: task {task.name} has labels {list(task.labels)} but "
                         f"the artifact was trained on {meta['labels']}")
    return task


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def inference_placement(device: str, precision: str, meta: dict) -> tuple[str, str]:
    """(device, precision) for ``--device``/``--precision``: ``auto`` runs on the GPU when one
    is visible, in the precision the run trained in (so eval equals training-time evaluation);
    on the CPU in fp32 (fp16 kernels are GPU-only)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no GPU is visible (CUDA_VISIBLE_DEVICES, drivers)")
    if precision == "auto":
        precision = meta.get("precision", "fp32") if device == "cuda" else "fp32"
    if precision == "fp16" and device == "cpu":
        raise UserError("--precision fp16 needs a GPU; use fp32 or bf16 on the CPU")
    return device, precision


def load_for_inference(artifact: str, task: Task, model: str | None = None,
                       model_path: str | None = None, device: str = "cpu",
                       precision: str = "fp32"):
    """(model in eval mode on ``device`` in ``precision``, artifact metadata) for an artifact
    directory and its task (``task_from_meta``).

    The backbone defaults to the one recorded in the artifact; a different one is allowed
    (e.g. the same weights in another directory) but a fingerprint mismatch is reported.
    From a multi-task artifact, the shared prompt and ``task``'s head (a single-task model;
    the metadata returned is that task's view, ``artifacts.task_view``)."""
    meta, tensors = load_artifact(artifact)
    if is_multitask(meta):
        meta, tensors = task_view(meta, tensors, task.name, artifact)
    prompt, head, backbone = meta["prompt"], meta["head"], meta["backbone"]
    args = ModelArgs(
        model=model or backbone["model"],
        model_path=model_path or backbone.get("model_path"),
        method=meta["method"], prefix_len=prompt["prefix_len"], reparam="embedding",
        prefix_hidden=prompt["prefix_hidden"], prefix_dropout=prompt["prefix_dropout"],
        prefix_layers=",".join(map(str, prompt["prefix_layers"])) or "all",
        prompt_encoder="none", head=head["type"], head_dropout=head["dropout"])
    net = build_model(args, task)
    fingerprint = net.backbone.fingerprint()
    if fingerprint != backbone["fingerprint"]:
        print(f"[ptv2] warning: backbone {args.model} has fingerprint {fingerprint}, the "
              f"artifact was trained on {backbone['name_or_path']} ({backbone['fingerprint']}); "
              "results will differ from training", file=sys.stderr)
    net.load_artifact_state(tensors)
    net.to(device=device, dtype=DTYPES[precision])
    net.eval()
    return net, meta


@torch.no_grad()
def init_from_artifact(net, directory: str, tasks: dict[str, Task]) -> list[str]:
    """Start ``net`` (a freshly built model, before the DeepSpeed engine) from the prompt of an
    artifact, loaded exactly, and from the artifact's head of every task of ``tasks`` it has one
    for with the same labels; returns notes on the heads that start fresh (MPT-2: continue
    one task from a ``--tasks`` run's shared prompt).

    Refuses (UserError) an artifact of another method or backbone (fingerprint), or a prompt
    of another shape (prefix length, layers), naming both sides."""
    meta, tensors = load_artifact(directory)
    s = net.settings
    if meta["method"] != s.method or s.method not in ("ptv2", "prompt"):
        raise UserError(f"--init-prompt {directory}: trained with --method {meta['method']}; "
                        f"this run uses --method {s.method} (both must be ptv2 or both prompt)")
    want, have = meta["backbone"], net.backbone.describe()
    if want["fingerprint"] != have["fingerprint"]:
        raise UserError(f"--init-prompt {directory}: its prompt was trained on backbone "
                        f"{want['name_or_path']} (fingerprint {want['fingerprint']}), this run "
                        f"uses {have['name_or_path']} (fingerprint {have['fingerprint']})")
    name = "deep_prompt.table" if s.method == "ptv2" else "input_prompt.table"
    prompt = net.deep_prompt if s.method == "ptv2" else net.input_prompt
    if getattr(prompt, "reparam", "embedding") != "embedding" or \
            getattr(prompt, "encoder", "none") != "none":
        raise UserError(f"--init-prompt loads a prompt table: use --reparam embedding / "
                        f"--prompt-encoder none (the artifact's {name} is the collapsed table)")
    source, target = tensors[name], prompt.table
    layers_then = list(meta["prompt"].get("prefix_layers") or [])
    layers_now = list(getattr(prompt, "layers", []) or [])
    if tuple(source.shape) != tuple(target.shape) or layers_then != layers_now:
        raise UserError(f"--init-prompt {directory}: its prompt has shape "
                        f"{list(source.shape)} (prefix length {meta['prompt']['prefix_len']}, "
                        f"layers {layers_then}); this run's has {list(target.shape)} (prefix "
                        f"length {s.prefix_len}, layers {layers_now}): set --prefix-len and "
                        "--prefix-layers as the artifact's")
    notes = []
    with _gathered([target]):
        target.copy_(source)
    for task_name, task in tasks.items():
        head = net.task_head(task_name)
        if task_name not in artifact_tasks(meta):
            notes.append(f"task {task_name} was not in {directory} (tasks "
                         f"{', '.join(artifact_tasks(meta))}): its head starts fresh")
            continue
        view, own = task_view(meta, tensors, task_name, directory)
        state = {k[len("head."):]: v for k, v in own.items() if k.startswith("head.")}
        current = head.state_dict()
        if list(view["labels"]) != list(task.labels) or set(state) != set(current) or any(
                tuple(state[k].shape) != tuple(current[k].shape) for k in current):
            notes.append(f"task {task_name}'s head in {directory} has other labels or another "
                         "shape: its head starts fresh")
            continue
        with _gathered(list(head.parameters())):
            head.load_state_dict(state)
        notes.append(f"task {task_name}: head loaded from {directory}")
    return notes


def _gathered(params):
    """Full parameters to write into under ZeRO-3 (a no-op otherwise)."""
    import contextlib

    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
