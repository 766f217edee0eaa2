"""GLM (THUDM) as a P-Tuning v2 backbone, through the standalone ``glm`` package.

Input layouts follow GLM's own fine-tuning:
  classification  ``[CLS] A [SEP] B <eos>``, fully bidirectional (sep = real length); the
                  head reads [CLS].
  cloze           ``[CLS] pattern-with-[MASK] <eos> <|startofpiece|>``: part A is the pattern
                  (bidirectional), the sop token opens the span that fills the [MASK] (position
                  = the mask's, block position 1); the LM logits at the sop token over the
                  verbalizer words are the class scores.
Deep prompts are passed to ``GLMModel`` as per-layer prefix keys/values.
"""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..dropout import use_fast_dropout
from ..errors import UserError
from ..prompts import Prefix, PrefixShape
from .base import Backbone, zero3
from .layout import pad_features, render_cloze

RELEASE_MARKERS = ("latest_checkpointed_iteration.txt", "latest")


def is_glm(model: str, model_path: str | None = None) -> bool:
    """True for a GLM preset name or a directory holding a GLM checkpoint."""
    from glm.config import PRESETS

    if model in PRESETS:
        return True
    path = model_path or model
    if not os.path.isdir(path):
        return False
    if any(os.path.isfile(os.path.join(path, m)) for m in RELEASE_MARKERS):
        return True
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return False
    with open(config_file) as f:
        config = json.load(f)
    return (config.get("model_type") == "glm"
            or any("GLM" in a for a in config.get("architectures") or [])
            or {"num_layers", "max_position_embeddings", "tokenizer"} <= set(config))


class GLMBackbone(Backbone):
    """A GLM model + its tokenizer behind the toolkit's backbone interface.

    Args:
        model: a preset name (``glm-large``, ``glm-2b``, ``glm-10b``, ``glm-10b-chinese``) or a
            checkpoint directory.
        model_path: the checkpoint directory when ``model`` is a preset (release or hub layout).
        dtype: weight dtype to load (fp32 by default; DeepSpeed casts for fp16/bf16 runs).
        allow_unsafe_pickle: read .pt files the weights-only unpickler refuses with the full
            unpickler (executes code stored in the file; ``--allow-unsafe-pickle``).
    """

    kind = "glm"
    has_lm_head = True
    pretrained_pooler = None  # GLM's pooler head is trainable (heads.PoolerHead builds one)

    def __init__(self, model: str, model_path: str | None = None, dtype: str = "fp32",
                 gradient_checkpointing: bool = False, ds_config: dict | None = None,
                 allow_unsafe_pickle: bool = False):
        super().__init__()
        from glm.checkpoint import from_pretrained
        from glm.config import PRESETS
        from glm.tokenization import holds_tokenizer_files, load_glm_tokenizer

        preset = model if model in PRESETS else None
        path = model_path or (None if preset else model)
        if path is None:
            raise UserError(f"--model {model} needs --model-path DIR with the weights (THUDM's "
                             "release directory or the hub layout); see docs/glm.md")
        self.name_or_path = path
        if zero3(ds_config):
            # partitioned at construction, loaded module by module into the shards; the
            # weight dtype follows the config's fp16/bf16 section
            self.model = from_pretrained(path, config=preset, zero_init=True,
                                         ds_config=ds_config,
                                         allow_unsafe_pickle=allow_unsafe_pickle)
        else:
            self.model = from_pretrained(path, config=preset, dtype=dtype,
                                         allow_unsafe_pickle=allow_unsafe_pickle)
        self.model.train()
        use_fast_dropout(self.model)  # hidden dropouts: same p, cheaper CPU masks
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        c = self.model.config
        tokenizer_dir = path if holds_tokenizer_files(c.tokenizer, path) else None
        self.tokenizer = load_glm_tokenizer(c.tokenizer, tokenizer_dir,
                                            model_max_length=c.max_position_embeddings)
        self.hidden_size = c.hidden_size
        self.prefix_shape = PrefixShape(c.num_layers, c.num_attention_heads, c.head_dim)
        self.position_limit = c.max_position_embeddings
        if len(self.tokenizer) > c.vocab_size:
            raise UserError(f"{path}: tokenizer has {len(self.tokenizer)} tokens but the model "
                            f"only {c.vocab_size} embedding rows: the preset, config.json "
                            "'tokenizer' or the tokenizer files in the directory do not belong "
                            "to these weights")

    # ---- inputs -------------------------------------------------------------------------
    def encode(self, ids_a, ids_b, max_len, cloze_template=None):
        from glm.inputs import classification_input, cloze_input

        t = self.tokenizer
        max_len = min(max_len, self.max_positions)
        if cloze_template is None:
            f = classification_input(ids_a, ids_b, cls_id=t.cls_token_id, sep_id=t.sep_token_id,
                                     eos_id=t.eos_token_id, max_len=max_len,
                                     pad_id=t.pad_token_id)
            f["cls_index"] = 0
        else:
            # [CLS] + pattern + <eos> + <sop> must fit in max_len
            body, _ = render_cloze(cloze_template, ids_a, ids_b, t.mask_token_id,
                                   self.encode_text, max_len - 3)
            f = cloze_input([t.cls_token_id] + body + [t.eos_token_id], mask_id=t.mask_token_id,
                            sop_id=t.sop_token_id, max_len=max_len, pad_id=t.pad_token_id)
            f["mask_index"] = f.pop("target_index")
        length = int(f["sep"]) + (0 if cloze_template is None else 1)
        return {"input_ids": [int(x) for x in f["input_ids"][:length]],
                "position_ids": [[int(x) for x in row[:length]] for row in f["position_ids"]],
                "sep": int(f["sep"]),
                **({"mask_index": int(f["mask_index"])} if "mask_index" in f else {})}

    def collate(self, features, pad_values=None):
        # attention itself uses sep; attention_mask (real tokens) serves token counts
        return pad_features(features, {"input_ids": self.tokenizer.pad_token_id,
                                       "position_ids": 0, **(pad_values or {})})

    def num_special_tokens(self, pair):
        return 3 if pair else 2  # [CLS] A [SEP] B <eos> / [CLS] A <eos>

    def segment_starts(self, len_a, pair):
        return 1, (1 + len_a + 1) if pair else None

    # ---- model --------------------------------------------------------------------------
    def input_embeddings(self) -> nn.Embedding:
        return self.model.word_embeddings

    def config_dict(self) -> dict:
        d = self.model.config.to_dict()
        d.pop("gradient_checkpointing", None)
        return d

    def forward(self, batch, prefix: Prefix | None = None, prefix_mask=None, input_prompt=None):
        input_ids, position_ids, sep = batch["input_ids"], batch["position_ids"], batch["sep"]
        if input_prompt is None:
            return self.model(input_ids, position_ids, sep, prefix=prefix,
                              prefix_mask=prefix_mask).last_hidden_state
        # shallow prompt: P embeddings at the start of part A, which shifts the real tokens'
        # positions (and sep) by P; block positions of the prompt are 0
        B, P = input_ids.shape[0], input_prompt.shape[1]
        embeds = self.model.word_embeddings(input_ids)
        embeds = torch.cat([input_prompt.to(embeds.dtype), embeds], dim=1)
        prompt_pos = torch.arange(P, device=input_ids.device).expand(B, P)
        positions = torch.stack([
            torch.cat([prompt_pos, position_ids[:, 0] + P], dim=1),
            torch.cat([torch.zeros_like(prompt_pos), position_ids[:, 1]], dim=1)], dim=1)
        out = self.model(None, positions, sep + P, inputs_embeds=embeds, prefix=prefix,
                         prefix_mask=prefix_mask)
        return out.last_hidden_state[:, P:]

    def key_value_probes(self):
        s = self.prefix_shape

        def split(out):  # fused q/k/v projection [B, S, 3H] -> k, v [B, heads, S, d]
            B, S, _ = out.shape
            _, k, v = out.view(B, S, 3, s.num_heads, s.head_dim).permute(2, 0, 3, 1, 4)
            return {"k": k, "v": v}

        return [[(layer.attention.query_key_value, split)]
                for layer in self.model.transformer.layers]

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied LM logits [N, V] for hidden states [N, H] (GLM has no output bias)."""
        return F.linear(hidden, self.model.word_embeddings.weight)

