"""Prefix (P-Tuning v2) injection into DeBERTa (v1) and DeBERTa-v2/v3 encoders.

DeBERTa's disentangled attention does not go through transformers' ``AttentionInterface``,
so the BERT route of ``attention.py`` cannot reach it. Instead:

* each self-attention module becomes a subclass whose ``forward`` adds the layer's prefix
  keys/values to the computation (and is the unmodified model code when there is none);
* each layer becomes a subclass whose ``forward`` takes ``ptv2_kv`` / ``ptv2_mask`` keyword
  arguments and hands them to its self-attention module for the duration of that call;
* the model gets a forward pre-hook that pops ``ptv2_prefix`` / ``ptv2_prefix_mask`` from the
  keywords of ``model(...)`` (``DebertaModel.forward`` would silently swallow them) and a
  per-layer ``__call__`` that turns them into those layer keywords.

Why keywords of the layer call: transformers checkpoints ``forward`` of a
``GradientCheckpointingLayer`` as ``checkpoint(partial(forward, self, **kwargs), *args)``, so
with non-reentrant checkpointing the recomputation in the backward pass sees the very same
prefix tensors as the first pass (and gradients reach them), whereas state read from a module
attribute during recomputation would be gone or belong to a later batch.

Semantics (as the official P-Tuning v2 DeBERTa code): with real tokens' query q_i, key k_j,
prefix key K_p and value V_p, the score of query i is

    prefix column p:  q_i . K_p / s                       (content-to-content only)
    real column j:    q_i . k_j / s + c2p(i, j) + p2c(i, j) (the model's own terms)

with s = sqrt(head_dim * (1 + number of relative terms)), the model's scale. The relative
terms are computed over the real tokens only (so real positions do not move) and are zero in
the prefix columns. The softmax runs over all P + S columns (prefix columns hidden by the
prefix mask get -inf, real ones hidden by the attention mask the model's fill value, so an
all-hidden prefix reproduces the model exactly, padding rows included), attention dropout
applies to all of them, and the values are ``cat(V_prefix, v_real)``. Prefix keys/values enter after the projections and
biases, i.e. they are used as given.
"""
from __future__ import annotations

import torch
from torch import nn

DEBERTA_TYPES = ("deberta", "deberta-v2")


def _mask_scores(scores: torch.Tensor, attention_mask: torch.Tensor,
                 prefix_mask: torch.Tensor | None, P: int) -> torch.Tensor:
    """Mask [B, H, S, P + S] scores. Real columns the model's [B, 1, S, S] mask hides get the
    model's fill value (the dtype's minimum); prefix columns ``prefix_mask`` ([B, P], 1 =
    visible) hides get -inf. So a query row that sees nothing (a padding row) keeps exactly the
    model's uniform attention over the real columns, as without a prefix."""
    real_mask = attention_mask.bool()
    if real_mask.dim() == 3:
        real_mask = real_mask.unsqueeze(1)
    prefix_scores, real_scores = scores.split([P, scores.shape[-1] - P], dim=-1)
    real_scores = real_scores.masked_fill(~real_mask, torch.finfo(scores.dtype).min)
    if prefix_mask is not None:
        hidden = ~prefix_mask.to(device=scores.device).bool()[:, None, None, :]
        prefix_scores = prefix_scores.masked_fill(hidden, float("-inf"))
    return torch.cat([prefix_scores, real_scores], dim=-1)


class _PrefixAttentionState:
    """The prefix of the current layer call (set by the layer, read by its attention)."""

    ptv2_kv = None
    ptv2_mask = None


# ---- self-attention ---------------------------------------------------------------------
def _v1_attention_class():
    from transformers.models.deberta import modeling_deberta as m

    class PrefixDebertaSelfAttention(_PrefixAttentionState, m.DisentangledSelfAttention):
        """DeBERTa (v1) disentangled self-attention with P-Tuning v2 prefix keys/values."""

        def forward(self, hidden_states, attention_mask, output_attentions=False,
                    query_states=None, relative_pos=None, rel_embeddings=None):
            if self.ptv2_kv is None:
                return super().forward(hidden_states, attention_mask, output_attentions,
                                       query_states=query_states, relative_pos=relative_pos,
                                       rel_embeddings=rel_embeddings)
            if query_states is not None:
                raise NotImplementedError("deep prompts with DeBERTa query_states (z_steps)")
            prefix_k, prefix_v = self.ptv2_kv
            qp = self.in_proj(hidden_states)
            query, key, value = self.transpose_for_scores(qp).chunk(3, dim=-1)  # [B, H, S, d]
            query = query + self.transpose_for_scores(self.q_bias[None, None, :])
            value = value + self.transpose_for_scores(self.v_bias[None, None, :])
            scale_factor = 1 + len(self.pos_att_type)
            scale = m.scaled_size_sqrt(query, scale_factor)
            query = query / scale.to(dtype=query.dtype)
            scores = torch.matmul(query, key.transpose(-1, -2))
            if self.relative_attention and rel_embeddings is not None and relative_pos is not None:
                rel_embeddings = self.pos_dropout(rel_embeddings)
                scores = scores + self.disentangled_att_bias(query, key, relative_pos,
                                                             rel_embeddings, scale_factor)
            prefix_scores = torch.matmul(query, prefix_k.to(query.dtype).transpose(-1, -2))
            scores = torch.cat([prefix_scores, scores], dim=-1)  # [B, H, S, P + S]
            if self.head_logits_proj is not None:
                scores = self.head_logits_proj(scores.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            scores = _mask_scores(scores, attention_mask, self.ptv2_mask, prefix_k.shape[-2])
            probs = self.dropout(nn.functional.softmax(scores, dim=-1))
            if self.head_weights_proj is not None:
                probs = self.head_weights_proj(probs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            value = torch.cat([prefix_v.to(value.dtype), value], dim=-2)
            context = torch.matmul(probs, value).permute(0, 2, 1, 3).contiguous()
            context = context.view(context.shape[:-2] + (-1,))
            return (context, probs if output_attentions else None)

    return PrefixDebertaSelfAttention


def _v2_attention_class():
    from transformers.models.deberta_v2 import modeling_deberta_v2 as m

    class PrefixDebertaV2SelfAttention(_PrefixAttentionState, m.DisentangledSelfAttention):
        """DeBERTa-v2/v3 disentangled self-attention with P-Tuning v2 prefix keys/values."""

        def forward(self, hidden_states, attention_mask, output_attentions=False,
                    query_states=None, relative_pos=None, rel_embeddings=None):
            if self.ptv2_kv is None:
                return super().forward(hidden_states, attention_mask, output_attentions,
                                       query_states=query_states, relative_pos=relative_pos,
                                       rel_embeddings=rel_embeddings)
            if query_states is not None:
                raise NotImplementedError("deep prompts with DeBERTa query_states (z_steps)")
            prefix_k, prefix_v = self.ptv2_kv  # [B, H, P, d]
            H = self.num_attention_heads
            # [B * H, S, d], as the model computes
            query = self.transpose_for_scores(self.query_proj(hidden_states), H)
            key = self.transpose_for_scores(self.key_proj(hidden_states), H)
            value = self.transpose_for_scores(self.value_proj(hidden_states), H)
            scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
            scale = m.scaled_size_sqrt(query, scale_factor).to(dtype=query.dtype)
            scores = torch.bmm(query, key.transpose(-1, -2) / scale)
            if self.relative_attention:
                rel_embeddings = self.pos_dropout(rel_embeddings)
                rel_att = self.disentangled_attention_bias(query, key, relative_pos,
                                                           rel_embeddings, scale_factor)
                scores = scores + rel_att
            B, _, P, d = prefix_k.shape
            S = query.shape[-2]
            prefix_k = prefix_k.to(query.dtype).reshape(B * H, P, d)
            prefix_v = prefix_v.to(value.dtype).reshape(B * H, P, d)
            prefix_scores = torch.bmm(query, prefix_k.transpose(-1, -2) / scale)
            scores = torch.cat([prefix_scores, scores], dim=-1).view(B, H, S, P + S)
            scores = _mask_scores(scores, attention_mask, self.ptv2_mask, P)
            probs = self.dropout(nn.functional.softmax(scores, dim=-1))
            context = torch.bmm(probs.view(B * H, S, P + S), torch.cat([prefix_v, value], 1))
            context = context.view(B, H, S, -1).permute(0, 2, 1, 3).contiguous()
            context = context.view(B, S, -1)
            return (context, probs if output_attentions else None)

    return PrefixDebertaV2SelfAttention


# ---- layers -----------------------------------------------------------------------------
class _PrefixLayerMixin:
    """Turns the pending prefix into keywords of the layer call, then into attention state
    for the duration of ``forward`` (which is what gradient checkpointing replays)."""

    ptv2_pending = None  # (kv, prefix_mask) for the current model call, or None

    def __call__(self, *args, **kwargs):
        pending = self.ptv2_pending
        if pending is not None:
            kwargs["ptv2_kv"], kwargs["ptv2_mask"] = pending
        return super().__call__(*args, **kwargs)

    def forward(self, *args, ptv2_kv=None, ptv2_mask=None, **kwargs):
        attention = self.attention.self
        attention.ptv2_kv, attention.ptv2_mask = ptv2_kv, ptv2_mask
        try:
            return super().forward(*args, **kwargs)
        finally:
            attention.ptv2_kv = attention.ptv2_mask = None


def _v1_layer_class():
    from transformers.models.deberta.modeling_deberta import DebertaLayer

    class PrefixDebertaLayer(_PrefixLayerMixin, DebertaLayer):
        pass

    return PrefixDebertaLayer


def _v2_layer_class():
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Layer

    class PrefixDebertaV2Layer(_PrefixLayerMixin, DebertaV2Layer):
        pass

    return PrefixDebertaV2Layer


_CLASSES: dict[str, tuple[type, type]] = {}


def _classes(model_type: str) -> tuple[type, type]:
    """(layer class, self-attention class) for a model type, built once."""
    if model_type not in _CLASSES:
        if model_type == "deberta":
            _CLASSES[model_type] = (_v1_layer_class(), _v1_attention_class())
        elif model_type == "deberta-v2":
            _CLASSES[model_type] = (_v2_layer_class(), _v2_attention_class())
        else:
            raise ValueError(f"not a DeBERTa model type: {model_type!r}")
        for cls in _CLASSES[model_type]:  # module-level names, so instances pickle by reference
            cls.__qualname__ = cls.__name__
            globals()[cls.__name__] = cls
    return _CLASSES[model_type]


# ---- model ------------------------------------------------------------------------------
def _take_prefix(model, args, kwargs):
    prefix = kwargs.pop("ptv2_prefix", None)
    prefix_mask = kwargs.pop("ptv2_prefix_mask", None)
    layers = model.encoder.layer
    if prefix is not None and len(prefix) != len(layers):
        raise ValueError(f"prefix has {len(prefix)} layer entries, the model {len(layers)} layers")
    for index, layer in enumerate(layers):
        kv = prefix[index] if prefix is not None else None
        # (k, v, mask): the layer's own [B, P] mask (mixed-task batches, serving/multitask.py)
        layer.ptv2_pending = None if kv is None else (
            (kv[0], kv[1]), kv[2] if len(kv) > 2 else prefix_mask)
    return args, kwargs


def _drop_prefix(model, args, output):
    for layer in model.encoder.layer:
        layer.ptv2_pending = None


def install_prefix_attention(model: nn.Module) -> nn.Module:
    """Make a ``DebertaModel`` / ``DebertaV2Model`` accept ``ptv2_prefix`` (a list with one
    ``None`` or ``(k, v)`` [B, heads, P, head_dim] per layer) and ``ptv2_prefix_mask``
    ([B, P], 1 = visible, or None) as keyword arguments of its forward call. Idempotent."""
    if getattr(model, "_ptv2_installed", False):
        return model
    layer_cls, attention_cls = _classes(model.config.model_type)
    for index, layer in enumerate(model.encoder.layer):
        layer.__class__ = layer_cls
        layer.attention.self.__class__ = attention_cls
        layer.attention.self.ptv2_layer = index
    model.register_forward_pre_hook(_take_prefix, with_kwargs=True)
    model.register_forward_hook(_drop_prefix, always_call=True)
    model._ptv2_installed = True
    return model


# ---- loading ----------------------------------------------------------------------------
class DebertaMLMHead(nn.Module):
    """The non-legacy DeBERTa masked-LM head, callable on hidden states alone: it multiplies
    with the encoder's word embeddings, which stay registered under the encoder only."""

    def __init__(self, head: nn.Module, base_model: nn.Module):
        super().__init__()
        self.head = head
        self.__dict__["_base_model"] = base_model  # a reference, not a submodule
        weight = base_model.get_input_embeddings().weight
        if hasattr(weight, "ds_id"):  # ZeRO-3: gather the embeddings for this module too
            import deepspeed

            deepspeed.zero.register_external_parameter(self, weight)

    def forward(self, hidden):
        return self.head(hidden, self._base_model.get_input_embeddings())


def load_deberta(name_or_path: str, with_lm_head: bool):
    """(base model, masked-LM head or None, loading info) for a DeBERTa checkpoint.

    DeBERTa's ``AutoModel`` has no pooler (and no ``add_pooling_layer`` argument). For the
    masked-LM head the checkpoint's own flavour is used: ``config.legacy`` picks the
    BERT-style ``cls`` head or the ``lm_predictions`` head of the original checkpoints; when
    the checkpoint holds the other one the load is retried with ``legacy`` flipped, and a
    checkpoint with neither (e.g. DeBERTa-v3, trained with replaced-token detection) is
    refused rather than given a randomly initialised head. The prefix attention is not
    installed here (``install_prefix_attention``).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    if not with_lm_head:
        encoder, info = AutoModel.from_pretrained(name_or_path, output_loading_info=True)
        return encoder, None, info
    legacy = bool(getattr(AutoConfig.from_pretrained(name_or_path), "legacy", True))
    for attempt in (legacy, not legacy):
        full, info = AutoModelForMaskedLM.from_pretrained(name_or_path, legacy=attempt,
                                                          output_loading_info=True)
        prefix = full.base_model_prefix + "."
        head_missing = sorted(k for k in info["missing_keys"] if not k.startswith(prefix))
        if not head_missing:
            break
    else:
        raise ValueError(
            f"{name_or_path}: --head verbalizer needs the checkpoint's masked-LM head, but "
            f"neither DeBERTa head flavour is in the checkpoint (missing e.g. "
            f"{', '.join(head_missing[:4])}); use --head linear or a checkpoint trained with MLM")
    encoder = full.base_model
    head = full.cls if full.legacy else DebertaMLMHead(full.lm_predictions, encoder)
    return encoder, head, info
