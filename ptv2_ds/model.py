"""One ``nn.Module`` for every method: backbone + (deep or shallow) prompt + head.

  ptv2      deep prompts in the selected layers, backbone frozen     (P-Tuning v2)
  prompt    shallow prompt at the input layer only, backbone frozen  (Lester et al. / P-tuning)
  finetune  no prompt, every parameter trains                        (fine-tuning baseline)

The three differ only in which prompt exists and what ``requires_grad`` says, so the paper's
comparisons are one flag apart and share the tasks, heads and trainer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbones import Backbone
from .errors import UserError
from .heads import build_head
from .prompts import DeepPrompt, InputPrompt, parse_prefix_layers

METHODS = ("ptv2", "prompt", "finetune")


@dataclass
class PromptSettings:
    """The prompt half of a run's configuration (what an artifact must reproduce)."""

    method: str = "ptv2"
    prefix_len: int = 16
    reparam: str = "embedding"
    prefix_hidden: int = 512
    prefix_dropout: float = 0.1
    prefix_layers: str = "all"
    prompt_encoder: str = "none"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")


@dataclass
class HeadSpec:
    """One task's head in a multi-task model: the head kind (``heads.build_head``), its output
    width and, for ``verbalizer``, the label words."""

    kind: str
    num_outputs: int
    verbalizer: list[str] | None = None


class PromptedModel(nn.Module):
    """Backbone + prompt + head. ``forward(batch)`` returns the head's output: class logits
    [B, C], per-token tag logits [B, S, T] or start/end logits [B, S, 2] (see ``heads``).

    Multi-task (MPT-2): with ``heads={task: HeadSpec}`` the prompt is shared and each task has
    its own head in ``self.heads`` (an ``nn.ModuleDict``; there is no ``self.head``), chosen
    per batch by ``forward(batch, task=name)``. A single-task model is exactly what it always
    was (``self.head``, parameter names ``head.*``)."""

    def __init__(self, backbone: Backbone, settings: PromptSettings,
                 num_outputs: int | None = None, head: str = "linear",
                 verbalizer: list[str] | None = None, head_dropout: float = 0.1, *,
                 heads: dict[str, HeadSpec] | None = None):
        super().__init__()
        self.backbone = backbone
        self.settings = settings
        self.deep_prompt: DeepPrompt | None = None
        self.input_prompt: InputPrompt | None = None
        s = settings
        if s.method == "ptv2":
            layers = parse_prefix_layers(s.prefix_layers, backbone.prefix_shape.num_layers)
            self.deep_prompt = DeepPrompt(backbone.prefix_shape, s.prefix_len, layers,
                                          s.reparam, s.prefix_hidden, s.prefix_dropout)
        elif s.method == "prompt":
            self.input_prompt = InputPrompt(backbone.hidden_size, s.prefix_len, s.prompt_encoder)
        # an input prompt occupies P positions of the sequence: encode() truncates the text to
        # what is left (set, not subtracted: the backbone may be built into a model again)
        backbone.input_prompt_len = s.prefix_len if s.method == "prompt" else 0
        self.heads: nn.ModuleDict | None = None
        if heads is None:
            self.head = build_head(head, backbone.hidden_size, num_outputs, backbone=backbone,
                                   verbalizer=verbalizer, dropout=head_dropout)
        else:  # built in task order: the initialisation is fixed by the seed and the order
            self.heads = nn.ModuleDict({
                name: build_head(spec.kind, backbone.hidden_size, spec.num_outputs,
                                 backbone=backbone, verbalizer=spec.verbalizer,
                                 dropout=head_dropout) for name, spec in heads.items()})
        # Frozen means frozen: no backbone parameter requires a gradient, so the optimizer
        # (built from requires_grad parameters only) never sees them.
        backbone.requires_grad_(s.method == "finetune")

    def forward(self, batch: dict[str, torch.Tensor],
                prefix_mask: torch.Tensor | None = None, task: str | None = None
                ) -> torch.Tensor:
        """``task``: which head a multi-task model applies (ignored by a single-task one)."""
        head = self.head if self.heads is None else self.task_head(task)
        B = batch["input_ids"].shape[0]
        prefix = self.deep_prompt(B) if self.deep_prompt is not None else None
        input_prompt = self.input_prompt(B) if self.input_prompt is not None else None
        hidden = self.backbone(batch, prefix=prefix, prefix_mask=prefix_mask,
                               input_prompt=input_prompt)
        return head(hidden, batch, self.backbone)

    def task_head(self, task: str | None) -> nn.Module:
        """The head of ``task`` (a multi-task model), or the one head."""
        if self.heads is None:
            return self.head
        if task not in self.heads:
            raise ValueError(f"this model has heads for {', '.join(self.heads)}, not {task!r}")
        return self.heads[task]

    # ---- parameters and export -------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict:
        """Trainable and backbone parameter counts; ratio = trainable / backbone (paper)."""
        trainable = sum(_numel(p) for p in self.trainable_parameters())
        backbone = sum(_numel(p) for p in self.backbone.parameters())
        return {"trainable_params": trainable, "backbone_params": backbone,
                "trainable_ratio": trainable / max(backbone, 1)}

    def _artifact_tensors(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        """The live tensors an artifact holds, by artifact name (prompts in table form).
        ``keep_vars``: the parameter objects themselves (ZeRO-3 gathers them one by one)."""
        tensors: dict[str, torch.Tensor] = {}
        if self.deep_prompt is not None:
            tensors["deep_prompt.table"] = self.deep_prompt.collapsed_table()
        if self.input_prompt is not None:
            tensors["input_prompt.table"] = self.input_prompt.collapsed_table()
        if self.heads is None:
            for name, tensor in self.head.state_dict(keep_vars=keep_vars).items():
                tensors[f"head.{name}"] = tensor
        else:  # heads.<task>.<name>: see artifacts.task_view
            for name, tensor in self.heads.state_dict(keep_vars=keep_vars).items():
                tensors[f"heads.{name}"] = tensor
        if self.settings.method == "finetune":  # the backbone changed too
            for name, tensor in self.backbone.state_dict(keep_vars=keep_vars).items():
                tensors[f"backbone.{name}"] = tensor
        return tensors

    def artifact_sources(self) -> dict[str, torch.Tensor]:
        """``finetune``: the live parameters/buffers an artifact holds, by artifact name, for
        writing one at a time (``artifacts.StreamedArtifact``)."""
        if self.settings.method != "finetune":
            raise ValueError("artifact_sources is for finetune runs (prompts are collapsed)")
        return self._artifact_tensors(keep_vars=True)

    @torch.no_grad()
    def artifact_state(self) -> dict[str, torch.Tensor]:
        """Prompt and head tensors only (fp32, CPU), every prompt collapsed to its table form;
        for ``finetune`` the backbone's weights too."""
        return {k: v.detach().float().cpu().contiguous() if v.is_floating_point()
                else v.detach().cpu().contiguous() for k, v in self._artifact_tensors().items()}

    def collapse_prompts(self) -> None:
        """Replace MLP/LSTM prompt encoders by the equivalent plain tables (for inference)."""
        if self.deep_prompt is not None and self.deep_prompt.reparam != "embedding":
            self.deep_prompt = self.deep_prompt.to_embedding_form()
        if self.input_prompt is not None and self.input_prompt.encoder != "none":
            self.input_prompt = self.input_prompt.to_embedding_form()

    @torch.no_grad()
    def load_artifact_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors written by ``artifact_state`` (collapsing the prompts first)."""
        self.collapse_prompts()
        own = self._artifact_tensors()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise UserError(f"artifact tensors do not match the model: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}; evaluate with the backbone, --method "
                            "and --task the artifact was trained with (its artifact_meta.json)")
        for name, target in own.items():
            if tuple(state[name].shape) != tuple(target.shape):
                raise UserError(f"artifact tensor {name} has shape {tuple(state[name].shape)}, "
                                f"the model expects {tuple(target.shape)}: a different backbone "
                                "than the artifact was trained on; drop --model (the artifact "
                                "names its own) or pass the same one")
            target.copy_(state[name])


def _numel(p: torch.Tensor) -> int:
    """Element count, also for ZeRO-3 partitioned parameters (which report shape [0])."""
    return int(getattr(p, "ds_numel", 0) or p.numel())
