"""The GLM backbone (THUDM GLM, Du et al. 2021) with deep-prompt (prefix) support.

One file, read top to bottom:

    GLMOutput           what forward returns
    GLMSelfAttention    fused q/k/v, prefix keys/values, one masked attention call
    GLMMLP              h -> 4h -> tanh-GeLU -> h
    GLMLayer            pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x))
    GLMTransformer      position tables, embedding dropout, the layers, final LayerNorm
    GLMModel            word embeddings + transformer + tied LM logits; the public entry point

The module names reproduce THUDM's state-dict keys exactly (`word_embeddings.weight`,
`transformer.layers.{i}.attention.query_key_value.weight`, ...), so a released checkpoint's
`module` dict loads with `load_state_dict` as is. There are no other parameters and no
persistent buffers.

Deep prompts (P-Tuning v2): layer l may receive prefix keys/values `(k_l, v_l)`, each
[B, heads, P, head_dim]. The layer attends over `cat(k_l, K)` / `cat(v_l, V)`; prefix
positions issue no queries and take no position embeddings, and the real tokens keep their
positions. The prefix enters at the attention computation itself, not through a KV cache.

Shapes: B batch, S sequence length, H hidden size, P prefix length, V vocabulary size,
nh attention heads, hd head dimension (H = nh * hd).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from glm.config import GLMConfig
from glm.errors import GLMUserError
from glm.inputs import sep_attention_mask

# THUDM masks scores as `scores * mask - 65504 * (1 - mask)`: 65504 is the largest fp16
# value, so the masked score stays finite in half precision.
MASK_FILL = 65504.0

ATTENTION_IMPLS = ("sdpa", "explicit")

Prefix = tuple[torch.Tensor, torch.Tensor]


class GLMOutput(NamedTuple):
    """last_hidden_state: [B, S, H] after the final LayerNorm; logits: [B, S, V] or None.

    A NamedTuple (not a dataclass) so that DeepSpeed ZeRO-3 finds the tensors in the output and
    attaches its backward hooks to the module."""

    last_hidden_state: torch.Tensor
    logits: torch.Tensor | None = None


def _no_empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """Let a query row with no visible key see every key ([..., S, K] bool in and out).

    sdpa returns NaN for such a row. GLM's own masks never have one (every query sees key 0);
    a hand-made mask might (e.g. padding queries). That row's output is meaningless either
    way, but this keeps it finite instead of spreading NaN through later layers.
    """
    return mask | ~mask.any(dim=-1, keepdim=True)


class GLMSelfAttention(nn.Module):
    """Multi-head self-attention with optional prefix keys/values.

    Two implementations that compute the same function (within fp32 rounding):
      "sdpa"     - one `F.scaled_dot_product_attention` call with a boolean mask
                   (uses fused/flash kernels where the backend has them);
      "explicit" - THUDM's arithmetic: `q k^T / sqrt(hd)`, `scores*mask - 65504*(1-mask)`,
                   softmax, dropout, `@ V`. Kept as the reference for testing.
    They differ only for a query row whose every key is masked (explicit: uniform weights;
    sdpa: NaN). GLM's masks never produce one - every query sees key 0 - and GLMModel widens
    any such row of a user-supplied mask before it gets here (`_no_empty_rows`).
    """

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        h = config.hidden_size
        # One fused projection, output laid out as [q | k | v], each H wide (THUDM's layout).
        self.query_key_value = nn.Linear(h, 3 * h)
        self.dense = nn.Linear(h, h)
        self.attention_dropout = nn.Dropout(config.attention_dropout)
        self.output_dropout = nn.Dropout(config.output_dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, H] -> [B, nh, S, hd]"""
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        prefix: Prefix | None = None,
        impl: str = "sdpa",
    ) -> torch.Tensor:
        """
        Args:
            x: [B, S, H], already layer-normed.
            mask: bool [B, 1, S, P + S] (True = visible); its first P columns are the prefix
                columns (P = 0 when `prefix` is None).
            prefix: None or (k, v), each [B, nh, P, hd].
            impl: "sdpa" or "explicit".
        Returns:
            [B, S, H]
        """
        b, s, h = x.shape
        q, k, v = self.query_key_value(x).split(h, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)        # [B, nh, S, hd]
        if prefix is not None:
            pk, pv = prefix
            # Prefix tensors may come in fp32 while the backbone runs in fp16/bf16.
            k = torch.cat([pk.to(k.dtype).expand(b, -1, -1, -1), k], dim=2)   # [B, nh, P+S, hd]
            v = torch.cat([pv.to(v.dtype).expand(b, -1, -1, -1), v], dim=2)
        if mask.shape[-1] != k.shape[2]:
            raise ValueError(f"mask has {mask.shape[-1]} key columns, keys have {k.shape[2]}")

        if impl == "sdpa":
            ctx = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask,
                # the module's p, so that one assignment changes both paths
                dropout_p=self.attention_dropout.p if self.training else 0.0,
            )
        elif impl == "explicit":
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            m = mask.to(scores.dtype)
            scores = scores * m - MASK_FILL * (1.0 - m)
            probs = self.attention_dropout(torch.softmax(scores, dim=-1))
            ctx = torch.matmul(probs, v)
        else:
            raise ValueError(f"unknown attention_impl {impl!r}; choose one of {ATTENTION_IMPLS}")

        ctx = ctx.transpose(1, 2).reshape(b, s, h)                         # [B, S, H]
        return self.output_dropout(self.dense(ctx))


class GLMMLP(nn.Module):
    """dense_h_to_4h -> tanh-approximate GeLU (as GLM was trained) -> dense_4h_to_h -> dropout."""

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.intermediate_size)
        self.dense_4h_to_h = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.output_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, H] -> [B, S, H]"""
        return self.dropout(self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x), approximate="tanh")))


class GLMLayer(nn.Module):
    """Pre-LN transformer block: x = x + Attn(LN(x)); x = x + MLP(LN(x))."""

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.attention = GLMSelfAttention(config)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size,
                                                     eps=config.layernorm_epsilon)
        self.mlp = GLMMLP(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        prefix: Prefix | None = None,
        impl: str = "sdpa",
    ) -> torch.Tensor:
        """x: [B, S, H]; mask: bool [B, 1, S, P + S]; prefix: None or (k, v) [B, nh, P, hd]."""
        x = x + self.attention(self.input_layernorm(x), mask, prefix, impl)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class GLMTransformer(nn.Module):
    """Everything between the word embeddings and the hidden states (THUDM's `transformer`).

    Position tables have `max_position_embeddings + 1` rows, as in the released checkpoints.
    """

    def __init__(self, config: GLMConfig):
        super().__init__()
        n_pos = config.max_position_embeddings + 1
        self.position_embeddings = nn.Embedding(n_pos, config.hidden_size)
        self.block_position_embeddings = nn.Embedding(n_pos, config.hidden_size)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.layers = nn.ModuleList(GLMLayer(config) for _ in range(config.num_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)

    def forward(
        self,
        x: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor,
        mask_with_prefix: torch.Tensor | None,
        prefix: Sequence[Prefix | None],
        impl: str,
        use_checkpointing: bool,
    ) -> torch.Tensor:
        """
        Args:
            x: word embeddings [B, S, H].
            position_ids: [B, 2, S]; channel 0 -> position table, channel 1 -> block table.
            mask: bool [B, 1, S, S], used by layers without a prefix.
            mask_with_prefix: bool [B, 1, S, P + S] (prefix columns first), used by layers
                with a prefix; None when no layer has one.
            prefix: one entry per layer, None or (k, v) each [B, nh, P, hd].
        Returns:
            [B, S, H] after the final LayerNorm.
        """
        x = x + self.position_embeddings(position_ids[:, 0])
        x = x + self.block_position_embeddings(position_ids[:, 1])
        x = self.embedding_dropout(x)

        for layer, layer_prefix in zip(self.layers, prefix):
            layer_mask = mask if layer_prefix is None else mask_with_prefix
            if use_checkpointing:
                # Non-reentrant checkpointing: gradients reach the prefix (nested in a tuple
                # argument) even with a frozen backbone whose layer input needs no grad. The
                # reentrant variant tracks only top-level tensor arguments and would drop them.
                x = checkpoint(layer, x, layer_mask, layer_prefix, impl, use_reentrant=False)
            else:
                x = layer(x, layer_mask, layer_prefix, impl)
        return self.final_layernorm(x)


class GLMModel(nn.Module):
    """GLM backbone: word embeddings, transformer, tied LM logits.

    Args:
        config: the shape (see `glm.config.GLMConfig` and its presets).
        attention_impl: "sdpa" (default: one `scaled_dot_product_attention` call per layer) or
            "explicit" (THUDM's reference arithmetic). Stored as `self.attention_impl` and read
            at every forward, so it can be switched on a built model.

    Activation checkpointing: on when `config.gradient_checkpointing` is true or after
    `gradient_checkpointing_enable()`; applied per layer, only in training mode with grad
    enabled. It works together with prefixes.

    Initialisation (as THUDM): weights N(0, init_std), biases 0, LayerNorm 1/0, the two output
    projections of each layer (`attention.dense`, `mlp.dense_4h_to_h`) N(0, init_std/sqrt(2L)).
    It is applied after construction, so under `deepspeed.zero.Init` (parameters already
    partitioned) it does nothing: load a checkpoint, or initialise inside
    `deepspeed.zero.GatheredParameters`.
    """

    def __init__(self, config: GLMConfig, attention_impl: str = "sdpa"):
        super().__init__()
        if attention_impl not in ATTENTION_IMPLS:
            raise GLMUserError(f"unknown attention_impl {attention_impl!r}; "
                             f"choose one of {ATTENTION_IMPLS}")
        self.config = config
        self.attention_impl = attention_impl
        self.gradient_checkpointing = bool(config.gradient_checkpointing)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.transformer = GLMTransformer(config)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Residual-stream outputs are summed over 2L sublayers; scaling keeps their variance flat.
        out_std = std / math.sqrt(2.0 * self.config.num_layers)
        for layer in self.transformer.layers:
            nn.init.normal_(layer.attention.dense.weight, mean=0.0, std=out_std)
            nn.init.normal_(layer.mlp.dense_4h_to_h.weight, mean=0.0, std=out_std)

    def gradient_checkpointing_enable(self) -> None:
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing = False

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; uses the full size (`ds_numel`) of ZeRO-3-partitioned parameters."""
        return sum(getattr(p, "ds_numel", p.numel()) for p in self.parameters()
                   if p.requires_grad or not trainable_only)

    # -- input checking -------------------------------------------------------------------

    def _real_mask(self, attention_mask: torch.Tensor, b: int, s: int,
                   device: torch.device) -> torch.Tensor:
        """Turn `attention_mask` (sep [B] or explicit [B, 1, S, S]) into bool [B, 1, S, S]."""
        attention_mask = torch.as_tensor(attention_mask, device=device)
        if attention_mask.dim() <= 1:
            if attention_mask.is_floating_point() or attention_mask.dtype == torch.bool:
                raise ValueError("a 0-D/1-D attention_mask is the per-example `sep` and must be "
                                 f"an integer tensor, got dtype {attention_mask.dtype}")
            return sep_attention_mask(attention_mask.expand(b), s)
        if attention_mask.dim() == 3:                                  # [B, S, S]
            attention_mask = attention_mask.unsqueeze(1)
        if attention_mask.dim() != 4 or tuple(attention_mask.shape[-2:]) != (s, s):
            raise ValueError(f"attention_mask must be sep [B] or a mask [B, 1, {s}, {s}], "
                             f"got shape {tuple(attention_mask.shape)}")
        return (attention_mask != 0).expand(b, 1, s, s)

    def _prefix_columns(self, prefix: Sequence[Prefix | None], prefix_mask: torch.Tensor | None,
                        b: int, s: int, device: torch.device) -> torch.Tensor | None:
        """Validate `prefix` and return the bool prefix columns [B, 1, S, P] (or None)."""
        cfg = self.config
        if len(prefix) != cfg.num_layers:
            raise ValueError(f"prefix needs one entry per layer ({cfg.num_layers}), "
                             f"got {len(prefix)}")
        lengths = set()
        for i, entry in enumerate(prefix):
            if entry is None:
                continue
            k, v = entry
            for name, t in (("k", k), ("v", v)):
                if (t.dim() != 4 or t.shape[0] not in (1, b) or t.shape[1] != cfg.num_attention_heads
                        or t.shape[3] != cfg.head_dim):
                    raise ValueError(
                        f"prefix[{i}] {name} must be [B, {cfg.num_attention_heads}, P, "
                        f"{cfg.head_dim}] with B = {b} (or 1), got {tuple(t.shape)}")
            if k.shape != v.shape:
                raise ValueError(f"prefix[{i}] k {tuple(k.shape)} and v {tuple(v.shape)} differ")
            lengths.add(k.shape[2])
        if not lengths:
            return None
        if len(lengths) > 1:
            raise ValueError(f"all layers' prefixes must share one length P, got {sorted(lengths)}")
        p = lengths.pop()
        if prefix_mask is None:
            return torch.ones(b, 1, s, p, dtype=torch.bool, device=device)
        if tuple(prefix_mask.shape) != (b, p):
            raise ValueError(f"prefix_mask must be [B, P] = [{b}, {p}], "
                             f"got {tuple(prefix_mask.shape)}")
        return (prefix_mask.to(device) != 0).view(b, 1, 1, p).expand(b, 1, s, p)

    # -- forward --------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        inputs_embeds: torch.Tensor | None = None,
        prefix: Sequence[Prefix | None] | None = None,
        prefix_mask: torch.Tensor | None = None,
        return_logits: bool = False,
    ) -> GLMOutput:
        """
        Args:
            input_ids: LongTensor [B, S], or None when `inputs_embeds` is given.
            position_ids: LongTensor [B, 2, S]; channel 0 = position, channel 1 = block position.
            attention_mask: either integer `sep` [B] (keys < sep visible to all queries, keys
                >= sep causal; see `glm.inputs.sep_attention_mask`) or an explicit mask
                [B, 1, S, S] (1/True = visible; [B, S, S] and a batch dim of 1 are accepted).
            inputs_embeds: [B, S, H], replaces the word-embedding lookup (shallow prompts).
            prefix: deep prompts, one entry per layer: None, or (k, v) each [B, nh, P, hd]
                (a batch dim of 1 is broadcast). All entries share one P; P may be 0.
            prefix_mask: [B, P]; 0 hides that prefix position from every query of that example.
            return_logits: also compute the tied LM logits.
        Returns:
            GLMOutput(last_hidden_state [B, S, H], logits [B, S, V] or None)
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        b, s, _ = inputs_embeds.shape
        device = inputs_embeds.device
        if tuple(position_ids.shape) != (b, 2, s):
            raise ValueError(f"position_ids must be [B, 2, S] = [{b}, 2, {s}], "
                             f"got {tuple(position_ids.shape)}")

        mask = self._real_mask(attention_mask, b, s, device)                 # [B, 1, S, S]
        if prefix is None:
            prefix = [None] * self.config.num_layers
        prefix_cols = self._prefix_columns(prefix, prefix_mask, b, s, device)  # [B, 1, S, P]
        # Layers with a prefix see [prefix columns | real columns] as one mask, built once.
        mask_with_prefix = None
        if prefix_cols is not None:
            mask_with_prefix = _no_empty_rows(torch.cat([prefix_cols, mask], dim=-1))
        mask = _no_empty_rows(mask)

        use_ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        hidden = self.transformer(inputs_embeds, position_ids, mask, mask_with_prefix, prefix,
                                  self.attention_impl, use_ckpt)

        logits = None
        if return_logits:
            # Tied output embedding, no bias. (Under ZeRO-3, DeepSpeed gathers this weight on
            # access even though it belongs to another module.)
            logits = F.linear(hidden, self.word_embeddings.weight)
        return GLMOutput(last_hidden_state=hidden, logits=logits)
