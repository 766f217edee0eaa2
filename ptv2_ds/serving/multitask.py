"""Many ptv2 tasks on one frozen backbone: mixed-task batches, one backbone forward each.

A ptv2 artifact is a prompt table and a head (about 0.1 % of the backbone), so N tasks trained
on the same backbone need one copy of it, not N. ``MultiTaskPredictor`` loads the backbone
once and every artifact's prompt and head, and stacks the prompts into one table

    kv    [L_u, 2, T, heads, P_max, head_dim]   keys/values of task t in prefix layer j
    mask  [L_u, T, P_max]                       True where task t has a prefix position

(``L_u``: the union of the tasks' prefix layers; ``P_max``: the longest prefix; a shorter
prefix, or a layer a task has no prefix in, is zeros and hidden by the mask). A batch of
features of different tasks gets its prefixes by one gather with the per-feature task index
(``kv[:, :, task_index]``), runs one backbone forward (a layer's prefix entry carries its own
[B, P] mask, see ``backbones.attention``), and then each task's head reads its own rows and the
task decodes them (``Task.collate`` / ``batch_results`` / ``decode``: no family-specific code
here). A masked prefix column gets zero attention weight, so each example's result equals
running its task alone, up to floating-point summation order.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..tasks import Encoded, Task
from .records import parse_record


@dataclass
class LoadedTask:
    """One artifact's task, as served. ``index``: its row in the stacked prefix table."""

    name: str
    artifact: str
    task: Task
    head: nn.Module
    meta: dict
    max_len: int
    prefix_len: int
    prefix_layers: tuple[int, ...]
    index: int = 0

    def describe(self) -> dict:
        """What ``GET /tasks`` shows."""
        return {"task": self.name, "base_task": self.task.name, "family": self.task.family,
                "labels": list(self.task.labels),
                "fields": self.task.record_fields(),
                "artifact": self.artifact, "max_seq_len": self.max_len,
                "prefix_len": self.prefix_len, "prefix_layers": list(self.prefix_layers)}


@dataclass
class Stats:
    """Counters of what the predictor ran (read by ``GET /health``)."""

    forward_passes: int = 0
    features: int = 0
    examples: int = 0
    mixed_forward_passes: int = field(default=0)   # forwards holding more than one task


def parse_artifact_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` (serve the artifact under another task name) or ``PATH``."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and not Path(spec).exists():
        return name, path
    return None, spec


def read_artifacts(artifacts: list[str]) -> list[tuple[str, str, dict, dict, Task]]:
    """``(served task name, path, metadata, tensors, task)`` per task of the artifacts, checked
    (ptv2, one backbone fingerprint, distinct names) before any model is loaded. A multi-task
    (MPT-2) artifact gives one entry per head: the shared prompt with that head."""
    from ..artifacts import artifact_tasks, is_multitask, load_artifact, task_view
    from ..inference import task_from_meta

    if not artifacts:
        raise UserError("give at least one --artifact")
    loaded = []
    for spec in artifacts:
        name, path = parse_artifact_spec(spec)
        meta, tensors = load_artifact(path)
        _check_servable(path, meta)
        if is_multitask(meta):
            if name is not None:
                raise UserError(f"--artifact {spec}: NAME=PATH renames the task of a "
                                f"single-task artifact; {path} holds tasks "
                                f"{', '.join(artifact_tasks(meta))}")
            views = [task_view(meta, tensors, t, path) for t in artifact_tasks(meta)]
        else:
            views = [(meta, tensors)]
        for view, view_tensors in views:
            task = task_from_meta(view, None, path)
            loaded.append((name or task.name, path, view, view_tensors, task))
    _check_same_backbone([(p, m) for _, p, m, _, _ in loaded])
    names = [n for n, *_ in loaded]
    for n in names:
        if names.count(n) > 1:
            paths = [p for m, p, *_ in loaded if m == n]
            raise UserError(f"two artifacts serve task {n!r} ({', '.join(paths)}); name "
                            f"them apart with --artifact NAME=PATH (e.g. {n}_a={paths[0]})")
    return loaded


class MultiTaskPredictor:
    """One backbone, several single-task ptv2 artifacts trained on it.

    Args:
        artifacts: artifact directories (``OUT/artifact``), each optionally ``NAME=PATH``, or
            what ``read_artifacts`` returned for them.
        model, model_path: the backbone (default: the one the artifacts were trained on).
        device, precision: where and in what precision to run (``inference_placement``).
        max_seq_len: overrides every artifact's own maximum sequence length.
    """

    def __init__(self, artifacts: list[str] | list[tuple], model: str | None = None,
                 model_path: str | None = None, device: str = "cpu", precision: str = "fp32",
                 max_seq_len: int | None = None):
        from ..backbones import load_backbone
        from ..inference import DTYPES
        from ..model import PromptedModel, PromptSettings

        loaded = artifacts if artifacts and not isinstance(artifacts[0], str) \
            else read_artifacts(artifacts)
        first = loaded[0][2]["backbone"]
        heads = {n: task.head_kind(meta["head"]["type"]) for n, _, meta, _, task in loaded}
        self.backbone = load_backbone(model or first["model"],
                                      model_path=model_path or first.get("model_path"),
                                      with_lm_head="verbalizer" in heads.values())
        fingerprint = self.backbone.fingerprint()
        if fingerprint != first["fingerprint"]:
            print(f"[ptv2] warning: backbone {model or first['model']} has fingerprint "
                  f"{fingerprint}, the artifacts were trained on {first['name_or_path']} "
                  f"({first['fingerprint']}); results will differ from training",
                  file=sys.stderr)
        self.device, self.dtype = torch.device(device), DTYPES[precision]

        self.tasks: dict[str, LoadedTask] = {}
        prompts = []   # per task: [n_sel * 2, heads, P, d] keys/values of its prefix layers
        for index, (name, path, meta, tensors, task) in enumerate(loaded):
            p = meta["prompt"]
            settings = PromptSettings(method="ptv2", prefix_len=p["prefix_len"],
                                      prefix_dropout=p["prefix_dropout"],
                                      prefix_layers=",".join(map(str, p["prefix_layers"]))
                                      or "all")
            verbalizer = task.verbalizer_words(self.backbone) \
                if heads[name] == "verbalizer" else None
            # the shared backbone object: building a PromptedModel adds only a prompt + head
            net = PromptedModel(self.backbone, settings, task.num_outputs, head=heads[name],
                                verbalizer=verbalizer, head_dropout=meta["head"]["dropout"])
            net.load_artifact_state(tensors)
            prompts.append(_prefix_kv(net.deep_prompt))
            max_len = min(max_seq_len or meta["max_seq_len"], self.backbone.max_positions)
            self.tasks[name] = LoadedTask(name, path, task, net.head, meta, max_len,
                                          p["prefix_len"], tuple(net.deep_prompt.layers), index)
        self.backbone.to(device=self.device, dtype=self.dtype).eval()
        for t in self.tasks.values():
            t.head.to(device=self.device, dtype=self.dtype).eval()
        self._stack(prompts)
        # the keys backbone.encode produces without a cloze template: what the shared forward
        # needs; the task's own keys (labels, mask_index, ...) stay in the task's batch
        probe = self.backbone.encode(self.backbone.encode_text("a"), None, 8)
        self._backbone_keys = tuple(probe)
        self.stats = Stats()

    # ---- the stacked prefix table -------------------------------------------------------
    def _stack(self, prompts: list[torch.Tensor]) -> None:
        shape = self.backbone.prefix_shape
        tasks = list(self.tasks.values())
        layers = sorted({layer for t in tasks for layer in t.prefix_layers})
        P = max([t.prefix_len for t in tasks] + [1])
        kv = torch.zeros(len(layers), 2, len(tasks), shape.num_heads, P, shape.head_dim)
        mask = torch.zeros(len(layers), len(tasks), P, dtype=torch.bool)
        row = {layer: j for j, layer in enumerate(layers)}
        for t, pieces in zip(tasks, prompts):
            for slot, layer in enumerate(t.prefix_layers):
                j = row[layer]
                kv[j, 0, t.index, :, :t.prefix_len] = pieces[2 * slot]
                kv[j, 1, t.index, :, :t.prefix_len] = pieces[2 * slot + 1]
                mask[j, t.index, :t.prefix_len] = True
        self.prefix_layers = tuple(layers)
        self.prefix_kv = kv.to(device=self.device, dtype=self.dtype)
        self.prefix_mask = mask.to(self.device)
        self.prefix_lens = torch.tensor([t.prefix_len for t in tasks])
        # per-layer masks reach the attention of Hugging Face encoders (sdpa and DeBERTa);
        # GLM's attention takes one [B, P] mask for all layers, which is only right when
        # every task has a prefix in the same layers
        self.per_layer_masks = self.backbone.kind == "hf"
        if not self.per_layer_masks and len({t.prefix_layers for t in tasks}) > 1:
            sets = "; ".join(f"{t.name}: {list(t.prefix_layers)}" for t in tasks)
            raise UserError(f"the artifacts put prefixes in different layers ({sets}); on a "
                            f"{self.backbone.kind} backbone tasks served together need the "
                            "same --prefix-layers")

    def prefix_for(self, task_index: torch.Tensor) -> tuple[list, torch.Tensor | None]:
        """(prefix list, shared [B, P] mask or None) for a batch whose rows belong to the
        tasks ``task_index`` [B]: one gather from the stacked table.

        Each prefix entry is None (no task of the batch has a prefix in that layer), (k, v)
        (every row sees all P positions) or (k, v, mask [B, P]), k/v [B, heads, P, d]; P is the
        longest prefix among the batch's tasks."""
        task_index = task_index.to(self.device)
        P = int(self.prefix_lens[task_index.cpu()].max())
        kv = self.prefix_kv[:, :, task_index, :, :P]           # [L_u, 2, B, heads, P, d]
        mask = self.prefix_mask[:, task_index, :P]             # [L_u, B, P]
        present = mask.any(dim=(1, 2)).tolist()
        complete = mask.all(dim=(1, 2)).tolist()
        prefix: list = [None] * self.backbone.prefix_shape.num_layers
        shared = None
        for j, layer in enumerate(self.prefix_layers):
            if not present[j]:
                continue
            if complete[j]:
                prefix[layer] = (kv[j, 0], kv[j, 1])
            elif self.per_layer_masks:
                prefix[layer] = (kv[j, 0], kv[j, 1], mask[j])
            else:   # same layer set for every task (checked): one mask serves all layers
                prefix[layer] = (kv[j, 0], kv[j, 1])
                shared = mask[j]
        return prefix, shared

    # ---- records -> examples -> features ---------------------------------------------------
    def task(self, name) -> LoadedTask:
        if not isinstance(name, str) or name not in self.tasks:
            raise UserError(f"unknown task {name!r}; loaded tasks: {', '.join(self.tasks)}")
        return self.tasks[name]

    def parse(self, row: dict, where: str, position: int = 0) -> tuple[str, object]:
        """(task name, example) of one record ``{"task": NAME, ...fields}``."""
        return parse_record({n: t.task for n, t in self.tasks.items()}, row, where, position)

    def encode(self, name: str, examples: list) -> Encoded:
        t = self.task(name)
        return t.task.encode(examples, self.backbone, t.max_len)

    def render(self, name: str, prediction, example) -> dict:
        """The JSON line of one prediction: ``{"task", ...the family's prediction fields}``."""
        t = self.tasks[name].task
        return {"task": name, **t.prediction_record(prediction, example)}

    # ---- running --------------------------------------------------------------------------
    def predict(self, items: list[tuple[str, object]], batch_size: int = 32) -> list:
        """One prediction per ``(task name, example)``, in order; features of every task are
        batched together (sorted by length)."""
        order: dict[str, list[int]] = {}
        for i, (name, _) in enumerate(items):
            order.setdefault(name, []).append(i)
        groups = [(name, self.encode(name, [items[i][1] for i in rows]))
                  for name, rows in order.items()]
        out: list = [None] * len(items)
        for (name, rows), preds in zip(order.items(), self.predict_encoded(groups, batch_size)):
            for i, p in zip(rows, preds):
                out[i] = p
        return out

    @torch.no_grad()
    def predict_encoded(self, groups: list[tuple[str, Encoded]], batch_size: int = 32
                        ) -> list[list]:
        """Predictions of each ``(task name, Encoded)`` group (several groups may share a
        task). All groups' features run in mixed batches of ``batch_size``, sorted by length
        so that batches pad little; each group is decoded by its task."""
        entries = [(g, i) for g, (_, enc) in enumerate(groups) for i in range(len(enc))]
        entries.sort(key=lambda e: len(groups[e[0]][1].features[e[1]]["input_ids"]))
        results: list[list] = [[None] * len(enc) for _, enc in groups]
        for start in range(0, len(entries), batch_size):
            chunk = entries[start:start + batch_size]
            names = [groups[g][0] for g, _ in chunk]
            features = [groups[g][1].features[i] for g, i in chunk]
            for (g, i), r in zip(chunk, self.run_batch(names, features)):
                results[g][i] = r
        self.stats.examples += sum(len(enc.examples) for _, enc in groups)
        return [self.tasks[name].task.decode(res, enc)
                for (name, enc), res in zip(groups, results)]

    @torch.no_grad()
    def run_batch(self, names: list[str], features: list[dict]) -> list:
        """Per-feature results (``Task.batch_results``) of one mixed batch: one prefix gather,
        one backbone forward, then each task's head on its rows."""
        tasks = [self.tasks[n] for n in names]
        index = torch.tensor([t.index for t in tasks])
        prefix, shared_mask = self.prefix_for(index)
        joint = self.backbone.collate([{k: f[k] for k in self._backbone_keys}
                                       for f in features])
        joint = {k: v.to(self.device) for k, v in joint.items()}
        hidden = self.backbone(joint, prefix=prefix, prefix_mask=shared_mask)   # [B, S, H]
        results: list = [None] * len(features)
        rows_of: dict[str, list[int]] = {}
        for row, n in enumerate(names):
            rows_of.setdefault(n, []).append(row)
        for n, rows in rows_of.items():
            t = self.tasks[n]
            batch = t.task.collate([features[r] for r in rows], self.backbone)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            # the task's own batch is padded to its longest feature, the joint one to the
            # batch's: the task's rows of the hidden states, cut to its width
            width = batch["input_ids"].shape[1]
            rows_t = torch.tensor(rows, device=self.device)
            outputs = t.head(hidden[rows_t, :width], batch, self.backbone)
            for r, result in zip(rows, t.task.batch_results(outputs, batch)):
                results[r] = result
        self.stats.forward_passes += 1
        self.stats.features += len(features)
        self.stats.mixed_forward_passes += len(rows_of) > 1
        return results


def _prefix_kv(prompt) -> torch.Tensor:
    """A deep prompt's keys/values without dropout: [n_sel * 2, heads, P, head_dim] (slot
    2s = keys, 2s + 1 = values of its s-th prefix layer), as ``DeepPrompt.forward`` lays
    them out."""
    s, P = prompt.shape, prompt.prefix_len
    table = prompt.collapsed_table().detach().float()
    return table.view(P, 2 * len(prompt.layers), s.num_heads, s.head_dim).permute(1, 2, 0, 3)


def _check_servable(path: str, meta: dict) -> None:
    if meta.get("method") != "ptv2":
        raise UserError(f"{path} was trained with --method {meta.get('method')}; only ptv2 "
                        "artifacts share a frozen backbone (prompt tuning changes the input "
                        "length and finetune the backbone itself): predict with it alone "
                        "(one --artifact)")


def _check_same_backbone(artifacts: list[tuple[str, dict]]) -> None:
    """Every artifact must have been trained on the same backbone (fingerprint)."""
    first_path, first = artifacts[0]
    want = first["backbone"]["fingerprint"]
    for path, meta in artifacts[1:]:
        got = meta["backbone"]["fingerprint"]
        if got != want:
            raise UserError(
                f"artifacts trained on different backbones cannot share one: {first_path} "
                f"({first['backbone']['name_or_path']}, fingerprint {want}) vs {path} "
                f"({meta['backbone']['name_or_path']}, fingerprint {got})")
