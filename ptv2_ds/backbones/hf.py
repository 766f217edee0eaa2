"""Hugging Face encoders (BERT, RoBERTa, XLM-R) as P-Tuning v2 backbones.

Deep prompts enter through the attention function registered in ``attention.py``; each
self-attention module is tagged with its layer index so the function picks that layer's prefix.
"""
from __future__ import annotations

import torch
from torch import nn

from ..prompts import Prefix, PrefixShape
from .attention import register_prefix_attention
from .base import Backbone, zero3
from .layout import SpecialTokenLayout, pad_features, render_cloze, truncate_pair

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta")


class HFEncoder(Backbone):
    """A BERT-family encoder loaded with transformers from a local directory or hub name.

    Args:
        name_or_path: directory with ``config.json`` + weights, or a hub name.
        with_lm_head: also load the masked-LM head (for ``--head verbalizer``).
        gradient_checkpointing: recompute each layer in the backward pass.
    """

    kind = "hf"

    def __init__(self, name_or_path: str, with_lm_head: bool = False,
                 gradient_checkpointing: bool = False, ds_config: dict | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

        self.name_or_path = name_or_path
        config = AutoConfig.from_pretrained(name_or_path)
        if config.model_type not in SUPPORTED_TYPES:
            raise ValueError(
                f"{name_or_path}: model type {config.model_type!r} is not supported by the "
                f"Hugging Face adapter (supported: {', '.join(SUPPORTED_TYPES)}; GLM models "
                "use --model glm-...)")
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if zero3(ds_config):
            from transformers.integrations import HfDeepSpeedConfig

            # while this object lives, from_pretrained builds under deepspeed.zero.Init and
            # loads the weights into the partitions
            self._hf_ds_config = HfDeepSpeedConfig(ds_config)
        if with_lm_head:
            full = AutoModelForMaskedLM.from_pretrained(name_or_path)
            self.encoder = full.base_model
            self.lm_head = getattr(full, "cls", None) or getattr(full, "lm_head")
        else:
            self.encoder = AutoModel.from_pretrained(name_or_path, add_pooling_layer=False)
            self.lm_head = None
        self.has_lm_head = with_lm_head
        self.encoder.set_attn_implementation(register_prefix_attention())
        for index, layer in enumerate(self.encoder.encoder.layer):
            layer.attention.self.ptv2_layer = index
        if gradient_checkpointing:
            # non-reentrant checkpointing propagates gradients to the prefix tensors, which
            # reach each layer as keyword arguments rather than positional inputs
            self.encoder.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        c = config
        self.hidden_size = c.hidden_size
        self.prefix_shape = PrefixShape(c.num_hidden_layers, c.num_attention_heads,
                                        c.hidden_size // c.num_attention_heads)
        # RoBERTa reserves padding_idx + 1 position rows before the first real position
        offset = (c.pad_token_id + 1) if c.model_type != "bert" else 0
        self.max_positions = c.max_position_embeddings - offset
        self.layout = SpecialTokenLayout(self.tokenizer)
        self.uses_token_types = getattr(c, "type_vocab_size", 0) > 1

    # ---- inputs -------------------------------------------------------------------------
    def encode(self, ids_a, ids_b, max_len, cloze_template=None):
        max_len = min(max_len, self.max_positions)
        if cloze_template is None:
            budget = max_len - self.layout.num_special(ids_b is not None)
            ids_a, ids_b = truncate_pair(ids_a, ids_b, budget)
            ids, types = self.layout.build(ids_a, ids_b)
            return {"input_ids": ids, "token_type_ids": types}
        budget = max_len - self.layout.num_special(False)
        body, mask_index = render_cloze(cloze_template, ids_a, ids_b,
                                        self.tokenizer.mask_token_id, self.encode_text, budget)
        ids, types = self.layout.build(body)
        return {"input_ids": ids, "token_type_ids": types,
                "mask_index": mask_index + len(self.layout.single[0][0])}

    def collate(self, features, pad_values=None):
        return pad_features(features, {"input_ids": self.tokenizer.pad_token_id,
                                       "token_type_ids": 0, **(pad_values or {})})

    def num_special_tokens(self, pair):
        return self.layout.num_special(pair)

    def segment_starts(self, len_a, pair):
        regions = (self.layout.pair if pair else self.layout.single)[0]
        start_a = len(regions[0])
        return start_a, (start_a + len_a + len(regions[1])) if pair else None

    # ---- model --------------------------------------------------------------------------
    def input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def config_dict(self) -> dict:
        d = self.encoder.config.to_dict()
        for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype",
                         "_attn_implementation", "_attn_implementation_autoset",
                         "architectures", "use_cache", "gradient_checkpointing"):
            d.pop(volatile, None)
        return d

    def forward(self, batch, prefix: Prefix | None = None, prefix_mask=None, input_prompt=None):
        input_ids = batch["input_ids"]
        attention_mask = batch["attention_mask"]
        token_types = batch.get("token_type_ids") if self.uses_token_types else None
        kwargs = {}
        if prefix is not None:
            kwargs["ptv2_prefix"] = prefix
            kwargs["ptv2_prefix_mask"] = prefix_mask
        if input_prompt is None:
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_types, **kwargs)
            return out.last_hidden_state
        # shallow prompt: prepend P embeddings; the model numbers positions over P + S
        B, P = input_ids.shape[0], input_prompt.shape[1]
        embeds = self.input_embeddings()(input_ids)
        embeds = torch.cat([input_prompt.to(embeds.dtype), embeds], dim=1)
        attention_mask = torch.cat([attention_mask.new_ones(B, P), attention_mask], dim=1)
        if token_types is not None:
            token_types = torch.cat([token_types.new_zeros(B, P), token_types], dim=1)
        out = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask,
                           token_type_ids=token_types, **kwargs)
        return out.last_hidden_state[:, P:]

    def lm_logits(self, hidden):
        if self.lm_head is None:
            raise RuntimeError("this backbone was loaded without its masked-LM head")
        return self.lm_head(hidden)
