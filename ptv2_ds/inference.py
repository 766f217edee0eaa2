"""Rebuild a trained model from an artifact for ``ptv2 eval`` / ``ptv2 predict``."""
from __future__ import annotations

import sys

import torch

from .artifacts import load_artifact
from .builder import build_model
from .config import ModelArgs
from .errors import UserError
from .tasks import Task, build_task


def task_from_meta(meta: dict, name: str | None = None, **overrides) -> Task:
    """The artifact's task (or ``name``, which must have the same labels), with the options it
    was trained with, except ``overrides`` that are not None (e.g. ``null_threshold``).
    Artifacts written before task families existed hold the classification options (head,
    template, verbalizer) at the top level."""
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
    (e.g. the same weights in another directory) but a fingerprint mismatch is reported."""
    meta, tensors = load_artifact(artifact)
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
