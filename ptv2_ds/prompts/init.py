"""Where a prompt starts: ``--prefix-init random | vocab | activations``.

``random``       the table as built: N(0, 0.02) (``DeepPrompt`` / ``InputPrompt``).
``vocab``        P ordinary vocabulary tokens drawn with the run's seed. ptv2: each layer's
                 prefix keys/values are the keys/values the frozen backbone computes for those
                 tokens read as one sequence; prompt: their word embeddings (Lester et al.'s
                 "sampled vocabulary" init).
``activations``  the P most frequent word-like tokens of the training text. ptv2: each layer's
                 prefix keys/values are that token's keys/values averaged over its occurrences
                 in a sample of training inputs (what the layer's attention already sees for
                 it); prompt: their word embeddings.

Either way the prefix starts where the backbone's own keys and values live, so its attention
scores and values are in distribution from the first step, instead of near-zero keys whose
values only dilute the attention. Measured against ``random`` in docs/RESULTS.md.

The tables are set directly, so the prompt must be the plain table (``--reparam embedding``,
``--prompt-encoder none``); the capture runs an ordinary forward of the unpartitioned backbone
before the DeepSpeed engine exists, so ZeRO-3 is refused (stages 0-2 are fine).
"""
from __future__ import annotations

import torch

from ..errors import UserError

PREFIX_INITS = ("random", "vocab", "activations")
SAMPLE_INPUTS = 256   # training inputs read for ``activations``
CAPTURE_BATCH = 32
# what a backbone's ``encode`` produces; a task's own keys (labels, offsets) stay behind
BACKBONE_KEYS = ("input_ids", "token_type_ids", "position_ids", "sep")


def check_prefix_init(kind: str, method: str, reparam: str, prompt_encoder: str,
                      zero_stage: int, init_prompt: str | None = None) -> None:
    """Refuse combinations ``init_prompt_from`` cannot serve, before any model is built."""
    if kind not in PREFIX_INITS:
        raise UserError(f"--prefix-init must be one of {', '.join(PREFIX_INITS)}, got {kind!r}")
    if kind == "random":
        return
    if init_prompt:
        raise UserError(f"--init-prompt and --prefix-init {kind} both say where the prompt "
                        "starts: give one")
    if method == "finetune":
        raise UserError(f"--prefix-init {kind}: --method finetune has no prompt to initialise")
    if method == "ptv2" and reparam != "embedding":
        raise UserError(f"--prefix-init {kind} sets the prompt table itself, which --reparam "
                        f"{reparam} builds through its encoder: use --reparam embedding")
    if method == "prompt" and prompt_encoder != "none":
        raise UserError(f"--prefix-init {kind} sets the prompt table itself, which "
                        f"--prompt-encoder {prompt_encoder} builds through its encoder: use "
                        "--prompt-encoder none")
    if zero_stage == 3:
        raise UserError(f"--prefix-init {kind} reads the backbone's activations before "
                        "training, which ZeRO-3's partitioned weights do not allow here: use "
                        "ZeRO stage 0-2 for the run, or start from a prompt trained that way "
                        "(--init-prompt ARTIFACT)")


def word_like(tokenizer, token_id: int, special: set[int] | None = None) -> bool:
    """A token worth a prompt slot: not special, and with a letter or digit in it.
    ``special``: the tokenizer's special ids, when the caller checks many tokens."""
    if token_id in (special if special is not None else set(tokenizer.all_special_ids)):
        return False
    text = tokenizer.convert_ids_to_tokens(token_id)
    return isinstance(text, str) and not (text.startswith("[") and text.endswith("]")) \
        and any(c.isalnum() for c in text)


def vocab_tokens(tokenizer, count: int, seed: int) -> list[int]:
    """``count`` distinct word-like token ids drawn uniformly from the vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    picked: list[int] = []
    for token_id in torch.randperm(len(tokenizer), generator=generator).tolist():
        if word_like(tokenizer, token_id, special):
            picked.append(token_id)
            if len(picked) == count:
                return picked
    raise UserError(f"--prefix-init vocab: the vocabulary has fewer than {count} ordinary "
                    "tokens for --prefix-len")


def frequent_tokens(tokenizer, features: list[dict], count: int) -> list[int]:
    """The ``count`` most frequent word-like token ids of ``features`` (ties: lower id)."""
    counts: dict[int, int] = {}
    for f in features:
        for token_id in f["input_ids"]:
            counts[token_id] = counts.get(token_id, 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    special = set(tokenizer.all_special_ids)
    picked = [t for t in ranked if word_like(tokenizer, t, special)][:count]
    if len(picked) < count:
        raise UserError(f"--prefix-init activations: the training data has only {len(picked)} "
                        f"different word tokens, fewer than --prefix-len {count}; use a "
                        "shorter prompt or --prefix-init vocab")
    return picked


def _device_of(backbone) -> torch.device:
    return next(backbone.parameters()).device


@torch.no_grad()
def mean_key_values(backbone, features: list[dict], token_ids: list[int]
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, keys and values [heads, P, head_dim]: for each of ``token_ids`` the mean of
    the layer's keys/values over that token's occurrences in ``features`` (real tokens only).
    Runs on the device the backbone is on."""
    L, s = backbone.prefix_shape.num_layers, backbone.prefix_shape
    P, device = len(token_ids), _device_of(backbone)
    slot_of = torch.full((max(token_ids) + 1,), -1, dtype=torch.long, device=device)
    slot_of[torch.tensor(token_ids, device=device)] = torch.arange(P, device=device)
    sums = torch.zeros(L, 2, P, s.num_heads, s.head_dim, dtype=torch.float64, device=device)
    seen = torch.zeros(P, dtype=torch.float64, device=device)
    for start in range(0, len(features), CAPTURE_BATCH):
        batch = backbone.collate([{k: f[k] for k in BACKBONE_KEYS if k in f}
                                  for f in features[start:start + CAPTURE_BATCH]])
        batch = {k: v.to(device) for k, v in batch.items()}
        ids = batch["input_ids"]
        slots = torch.where(ids < len(slot_of), slot_of[ids.clamp(max=len(slot_of) - 1)],
                            torch.full_like(ids, -1))
        slots[batch["attention_mask"] == 0] = -1
        where = slots >= 0                                        # [B, S]
        if not where.any():
            continue
        target = slots[where]                                     # [N]
        seen.index_add_(0, target, torch.ones_like(target, dtype=torch.float64))
        for layer, (k, v) in enumerate(backbone.layer_key_values(batch)):
            for j, x in enumerate((k, v)):                        # [B, heads, S, d]
                rows = x.permute(0, 2, 1, 3)[where]               # [N, heads, d]
                sums[layer, j].index_add_(0, target, rows.double())
    mean = (sums / seen.clamp(min=1).view(1, 1, P, 1, 1)).float().cpu()
    return [(mean[layer, 0].transpose(0, 1), mean[layer, 1].transpose(0, 1))
            for layer in range(L)]


@torch.no_grad()
def sequence_key_values(backbone, token_ids: list[int]
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, keys and values [heads, P, head_dim] of ``token_ids`` read as one sequence
    (with the backbone's special tokens around it)."""
    P = len(token_ids)
    feature = backbone.encode(token_ids, None, P + backbone.num_special_tokens(False))
    start, _ = backbone.segment_starts(P, pair=False)
    batch = {k: v.to(_device_of(backbone)) for k, v in backbone.collate([feature]).items()}
    return [(k[0, :, start:start + P].cpu(), v[0, :, start:start + P].cpu())
            for k, v in backbone.layer_key_values(batch)]


@torch.no_grad()
def init_prompt_from(model, kind: str, features: list[dict], seed: int,
                     device: str | torch.device | None = None) -> str:
    """Set the prompt of ``model`` (a PromptedModel before the DeepSpeed engine) as ``kind``
    says, from the training inputs ``features`` (encoded for its backbone); returns a line
    for the log. ``random`` leaves the model as built. ``device``: where to run the capture
    (the model is moved there first, as the engine would move it; a 10B backbone must not
    read 256 inputs on the CPU)."""
    if kind == "random":
        return "prompt initialised N(0, 0.02) (--prefix-init random)"
    if device is not None:
        model.to(device)
    backbone, settings = model.backbone, model.settings
    tokenizer = backbone.tokenizer
    P = settings.prefix_len
    sample = features[:SAMPLE_INPUTS]
    token_ids = (vocab_tokens(tokenizer, P, seed) if kind == "vocab"
                 else frequent_tokens(tokenizer, sample, P))
    words = " ".join(tokenizer.convert_ids_to_tokens(token_ids[:8])) + (" ..." if P > 8 else "")
    if settings.method == "prompt":
        embeddings = backbone.input_embeddings().weight
        model.input_prompt.table.copy_(embeddings[torch.tensor(token_ids)].float())
        return f"prompt initialised from the word embeddings of {words} (--prefix-init {kind})"
    was_training = backbone.training
    backbone.eval()  # no dropout: the values are the layer's, and no RNG is drawn
    try:
        per_layer = (sequence_key_values(backbone, token_ids) if kind == "vocab"
                     else mean_key_values(backbone, sample, token_ids))
    finally:
        backbone.train(was_training)
    prompt = model.deep_prompt
    s = prompt.shape
    # the table's layout (DeepPrompt.forward): [P, n_sel * 2, heads, head_dim], k then v
    table = prompt.table.view(P, 2 * len(prompt.layers), s.num_heads, s.head_dim)
    for slot, layer in enumerate(prompt.layers):
        k, v = per_layer[layer]                                   # [heads, P, d]
        table[:, 2 * slot] = k.transpose(0, 1).to(table)
        table[:, 2 * slot + 1] = v.transpose(0, 1).to(table)
    source = "read as one sequence" if kind == "vocab" else \
        f"averaged over their uses in {len(sample)} training inputs"
    return (f"prefix keys/values initialised from the backbone's own for {words}, {source} "
            f"(--prefix-init {kind})")
