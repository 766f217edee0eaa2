"""Hugging Face encoders (BERT, RoBERTa, XLM-R) as P-Tuning v2 backbones.

Deep prompts enter through the attention function registered in ``attention.py``; each
self-attention module is tagged with its layer index so the function picks that layer's prefix.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from ..dropout import use_fast_dropout
from ..errors import UserError
from ..prompts import Prefix, PrefixShape
from .attention import register_prefix_attention
from .base import Backbone, zero3
from .deberta import DEBERTA_TYPES, install_prefix_attention, load_deberta
from .layout import SpecialTokenLayout, pad_features, render_cloze, truncate_pair

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", *DEBERTA_TYPES)


class HFEncoder(Backbone):
    """A BERT-family encoder loaded with transformers from a local directory or hub name.

    Args:
        name_or_path: directory with ``config.json`` + weights, or a hub name.
        with_lm_head: also load the masked-LM head (for ``--head verbalizer``); the checkpoint
            must hold its weights (a sentence-embedding checkpoint has none: ValueError).
        gradient_checkpointing: recompute each layer in the backward pass.

    ``pretrained_pooler`` is the checkpoint's own pooler (tanh(dense(h[:, 0]))), a frozen
    submodule of this backbone, when the checkpoint holds pooler weights and no LM head is
    loaded; otherwise None. It is taken out of the encoder, whose forward never pools.
    """

    kind = "hf"

    def __init__(self, name_or_path: str, with_lm_head: bool = False,
                 gradient_checkpointing: bool = False, ds_config: dict | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

        self.name_or_path = name_or_path
        try:
            config = AutoConfig.from_pretrained(name_or_path)
        except (OSError, ValueError) as e:  # no such directory/hub name, offline, no model_type
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(
                f"--model {name_or_path}: cannot load a model config ({first}); pass a local "
                "directory holding config.json, tokenizer files and weights, a GLM preset with "
                "--model-path, or a hub name that is cached (HF_HUB_OFFLINE=1 reads only the "
                "cache)") from None
        if config.model_type not in SUPPORTED_TYPES:
            raise UserError(
                f"{name_or_path}: model type {config.model_type!r} is not supported by the "
                f"Hugging Face adapter (supported: {', '.join(SUPPORTED_TYPES)}; GLM models "
                "use --model glm-...)")
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if zero3(ds_config):
            from transformers.integrations import HfDeepSpeedConfig

            # while this object lives, from_pretrained builds under deepspeed.zero.Init and
            # loads the weights into the partitions
            self._hf_ds_config = HfDeepSpeedConfig(ds_config)
        # transformers' own load report (UNEXPECTED/MISSING tables, progress bar) is noise for
        # a frozen encoder; we check the loading info ourselves and only report what matters
        with _quiet_transformers():
            if config.model_type in DEBERTA_TYPES:  # no pooler; two MLM-head flavours
                self.encoder, deberta_head, info = load_deberta(name_or_path, with_lm_head)
            elif with_lm_head:
                full, info = AutoModelForMaskedLM.from_pretrained(name_or_path,
                                                                  output_loading_info=True)
            else:
                self.encoder, info = AutoModel.from_pretrained(
                    name_or_path, add_pooling_layer=True, output_loading_info=True)
        if zero3(ds_config):
            # done loading: a later from_pretrained in this process (ptv2 eval after train,
            # in a notebook or a test) must not build partitioned
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
            del self._hf_ds_config
        missing = sorted(info["missing_keys"])
        if config.model_type in DEBERTA_TYPES:
            self.lm_head, self.pretrained_pooler = deberta_head, None
        elif with_lm_head:
            head_name = "cls" if hasattr(full, "cls") else "lm_head"
            head_missing = [k for k in missing if k.startswith(head_name + ".")]
            if head_missing:
                raise UserError(
                    f"{name_or_path}: --head verbalizer needs the checkpoint's masked-LM head, "
                    f"but these weights are missing: {', '.join(head_missing)} (a "
                    "sentence-embedding checkpoint has none); use --head linear or a checkpoint "
                    "trained with MLM")
            self.encoder = full.base_model
            self.lm_head = getattr(full, head_name)
            self.pretrained_pooler = None
        else:
            self.lm_head = None
            pooler = self.encoder.pooler
            self.encoder.pooler = None  # the encoder returns hidden states only
            pooler_missing = any(k.startswith("pooler.") for k in missing)
            # a pooler the checkpoint lacks would be random: not used, not reported
            self.pretrained_pooler = None if pooler_missing else pooler
            missing = [k for k in missing if not k.startswith("pooler.")]
        if missing:
            shown = ", ".join(missing[:8]) + (f", ... ({len(missing) - 8} more)"
                                              if len(missing) > 8 else "")
            warnings.warn(f"{name_or_path}: {len(missing)} weights are missing from the "
                          f"checkpoint and were randomly initialised: {shown}", stacklevel=2)
        self.has_lm_head = with_lm_head
        if config.model_type in DEBERTA_TYPES:  # disentangled attention: no AttentionInterface
            install_prefix_attention(self.encoder)
        else:
            self.encoder.set_attn_implementation(register_prefix_attention())
        for index, layer in enumerate(self.encoder.encoder.layer):
            layer.attention.self.ptv2_layer = index
        # hidden/embedding dropout: the same p, cheaper masks on CPU (backbones/dropout.py)
        use_fast_dropout(self.encoder)
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
        # (DeBERTa numbers from 0; v2/v3 without position_biased_input have no absolute table
        # and max_position_embeddings is the length they were trained for)
        offset = (c.pad_token_id + 1) if c.model_type not in ("bert", *DEBERTA_TYPES) else 0
        self.position_limit = c.max_position_embeddings - offset
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
            kwargs["ptv2_mask_cache"] = {}  # the widened mask, built once per forward
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

    def key_value_probes(self):
        s = self.prefix_shape

        def heads(x):  # [B, S, H] -> [B, heads, S, d], as the attention lays out k and v
            return x.view(x.shape[0], x.shape[1], s.num_heads, s.head_dim).transpose(1, 2)

        probes = []
        for layer in self.encoder.encoder.layer:
            attn = layer.attention.self
            if hasattr(attn, "in_proj"):  # DeBERTa v1: fused per-head q/k/v, value bias
                def split(out, attn=attn):
                    B, S, _ = out.shape
                    _, k, v = out.view(B, S, s.num_heads, 3 * s.head_dim).transpose(
                        1, 2).chunk(3, dim=-1)
                    return {"k": k, "v": v + attn.v_bias.view(1, s.num_heads, 1, s.head_dim)}
                probes.append([(attn.in_proj, split)])
            else:  # BERT/RoBERTa key/value, DeBERTa-v2 key_proj/value_proj
                k_proj = getattr(attn, "key_proj", None) or attn.key
                v_proj = getattr(attn, "value_proj", None) or attn.value
                probes.append([(k_proj, lambda out: {"k": heads(out)}),
                               (v_proj, lambda out: {"v": heads(out)})])
        return probes

    def lm_logits(self, hidden):
        if self.lm_head is None:
            raise RuntimeError("this backbone was loaded without its masked-LM head")
        return self.lm_head(hidden)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' logging below errors and its progress bars for the block."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
