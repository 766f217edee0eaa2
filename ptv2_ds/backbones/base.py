"""The interface between the toolkit and a backbone (Hugging Face encoder or GLM).

An adapter owns everything backbone-specific: the tokenizer, the input layout (special tokens,
position ids, masks), where prefixes enter attention and how the LM head scores tokens. Tasks
hand it token ids; prompts and heads only ever see hidden states [B, S, H].
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Callable

import torch
from torch import nn

from ..prompts import Prefix, PrefixShape


class Backbone(nn.Module):
    """Base class of backbone adapters. Subclasses set the attributes in ``__init__``."""

    kind: str                 # "hf" or "glm"
    name_or_path: str
    tokenizer: object         # a Hugging Face tokenizer
    prefix_shape: PrefixShape
    hidden_size: int
    position_limit: int       # positions the model has (real tokens + shallow prompt)
    has_lm_head: bool
    input_prompt_len = 0      # positions a shallow (--method prompt) prompt takes; set by
    #                           PromptedModel, so building a model twice is harmless

    @property
    def max_positions(self) -> int:
        """Real tokens a sequence may hold: the model's positions less the shallow prompt's."""
        return self.position_limit - self.input_prompt_len

    def set_dropout(self, p: float) -> int:
        """Set the drop probability of every dropout inside the backbone (embeddings, attention
        probabilities, hidden states) to ``p``; returns how many modules changed. Attention
        reads its probability from its dropout module in every adapter, so this reaches the
        fused kernels too. Prompt and head dropouts are not the backbone's: untouched."""
        modules = [m for m in self.modules() if isinstance(m, nn.Dropout)]
        for m in modules:
            m.p = p
        return len(modules)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens.

        ``verbose=False``: the toolkit truncates/windows sequences itself, so the tokenizer's
        "Token indices sequence length is longer than the specified maximum" warning (from
        its ``model_max_length`` check) would be false here."""
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def encode(self, ids_a: list[int], ids_b: list[int] | None, max_len: int,
               cloze_template: str | None = None) -> dict:
        """One example's features (python lists/ints). With a cloze template the features hold
        ``mask_index``, the position whose LM logits score the label words."""
        raise NotImplementedError

    def collate(self, features: list[dict], pad_values: dict[str, int] | None = None
                ) -> dict[str, torch.Tensor]:
        """Pad a list of ``encode`` outputs (plus the task's keys) into a batch of tensors.

        ``pad_values`` names the task's per-token keys (e.g. ``{"labels": -100}``) and their
        pad value; every other per-example int (``labels`` of classification, ``sep``)
        becomes a [B] tensor (see ``layout.pad_features``)."""
        raise NotImplementedError

    def num_special_tokens(self, pair: bool) -> int:
        """Special tokens ``encode`` adds around one segment or a pair (no cloze template)."""
        raise NotImplementedError

    def segment_starts(self, len_a: int, pair: bool) -> tuple[int, int | None]:
        """Positions of the first token of segment a and (for a pair) segment b in the
        sequence ``encode(ids_a, ids_b, ...)`` returns when nothing is truncated."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor], prefix: Prefix | None = None,
                prefix_mask: torch.Tensor | None = None,
                input_prompt: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, S, H] of the real tokens.

        Args:
            prefix: per-layer deep-prompt keys/values (see ``DeepPrompt``).
            prefix_mask: [B, P], 1 = prefix position visible.
            input_prompt: [B, P, H] shallow prompt embeddings prepended to the input.
        """
        raise NotImplementedError

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [N, V] for hidden states [N, H]."""
        raise NotImplementedError

    def key_value_probes(self) -> list[list[tuple[nn.Module, Callable]]]:
        """Per layer, where its attention's keys and values can be read: a list of
        ``(module, split)`` pairs, where ``split(module_output)`` returns a dict with ``"k"``
        and/or ``"v"``, each [B, heads, S, head_dim] as the layer uses them (the form a prefix
        takes). Used by ``layer_key_values``."""
        raise NotImplementedError(f"{type(self).__name__} cannot report its keys and values")

    @torch.no_grad()
    def layer_key_values(self, batch: dict[str, torch.Tensor]
                         ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The keys and values [B, heads, S, head_dim] each layer computes for ``batch``
        (no prefix, no prompt; call in eval mode for deterministic values)."""
        captured: list[dict] = [{} for _ in range(self.prefix_shape.num_layers)]
        handles = []
        for layer, probes in enumerate(self.key_value_probes()):
            for module, split in probes:
                handles.append(module.register_forward_hook(
                    lambda _m, _i, out, layer=layer, split=split: captured[layer].update(
                        split(out))))
        try:
            self.forward(batch)
        finally:
            for handle in handles:
                handle.remove()
        return [(c["k"], c["v"]) for c in captured]

    def describe(self) -> dict:
        """What an artifact records about the backbone."""
        s = self.prefix_shape
        return {"kind": self.kind, "name_or_path": self.name_or_path,
                "num_layers": s.num_layers, "num_heads": s.num_heads,
                "hidden_size": self.hidden_size, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        """A short hash identifying the backbone's configuration and weights (cached).

        Hashing every weight of a 10B model is too slow to do on each run, so this hashes the
        configuration and the first rows of the word-embedding table: different checkpoints
        of one architecture differ there too. Under ZeRO-3 the first call gathers the table
        and must happen on every rank (the trainer calls it right after building)."""
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        emb = self.input_embeddings().weight
        rows = _first_rows(emb, 64).detach().float().cpu()
        h = hashlib.sha256(json.dumps(self.config_dict(), sort_keys=True).encode())
        h.update(rows.numpy().round(4).tobytes())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def input_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    def config_dict(self) -> dict:
        raise NotImplementedError


def zero3(ds_config: dict | None) -> bool:
    """Whether a (filled) DeepSpeed config asks for ZeRO stage 3."""
    return bool(ds_config) and ds_config.get("zero_optimization", {}).get("stage") == 3


def _first_rows(weight: torch.Tensor, n: int) -> torch.Tensor:
    """``weight[:n]`` (``[n, H]``), also when ZeRO-3 has partitioned ``weight``: the first rows
    lie in the first partition (rank 0 of the parameter's group holds flattened elements
    ``[0, ds_tensor.ds_numel)``), so they are broadcast from there instead of gathering the
    whole table on every rank (a 50k × 4k embedding is 400 MB per rank). Collective under
    ZeRO-3: every rank must call it."""
    if not hasattr(weight, "ds_id"):
        return weight[:n]
    import deepspeed
    import deepspeed.comm as dist

    shape = weight.ds_shape  # (weight.shape is empty outside a gather)
    n = min(n, shape[0])
    count = n * math.prod(shape[1:])
    group = weight.ds_process_group
    if count > weight.ds_tensor.ds_numel or \
            getattr(weight, "ds_secondary_tensor", None) is not None:
        with deepspeed.zero.GatheredParameters([weight]):
            return weight[:n].clone()
    rows = (weight.ds_tensor.narrow(0, 0, count).clone()
            if dist.get_rank(group=group) == 0 else
            torch.empty(count, dtype=weight.ds_tensor.dtype, device=weight.ds_tensor.device))
    dist.broadcast(rows, src=dist.get_global_rank(group, 0), group=group)
    return rows.view(n, *shape[1:])
