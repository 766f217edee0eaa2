"""Input builders for GLM: the attention mask rule, classification inputs and cloze inputs.

Everything here is a pure function of its arguments, so each can be checked against a
hand-written answer (see tests/glm/test_inputs.py).

GLM sees one sequence split in two parts at an index `sep`:

* part A = positions `< sep`: bidirectional context, visible to every query;
* part B = positions `>= sep`: generated autoregressively, so a part-B key j is visible to
  query i only when j <= i.

Positions are two-dimensional (`position_ids[:, 0]` and `position_ids[:, 1]`): channel 0 is
the position in part A (a part-B token reuses the position of the [MASK] it fills), channel 1
is the position inside the span being generated (0 throughout part A, 1 for the
<|startofpiece|> that opens a span, 2, 3, ... after it).
"""
from __future__ import annotations

import torch

from glm.errors import GLMUserError


def sep_attention_mask(sep: torch.Tensor, seq_len: int) -> torch.Tensor:
    """GLM's mask for a per-example split point.

    Args:
        sep: integer tensor [B]; the number of part-A positions of each example.
        seq_len: S, the sequence length.

    Returns:
        Bool tensor [B, 1, S, S]; entry [b, 0, i, j] is True when query i may attend to key j,
        i.e. when `j < sep[b]` (part A) or `j <= i` (causal inside part B).
    """
    sep = torch.as_tensor(sep)
    if sep.dim() != 1:
        raise ValueError(f"sep must be a 1-D integer tensor [B], got shape {tuple(sep.shape)}")
    if sep.is_floating_point() or sep.dtype == torch.bool:
        raise ValueError(f"sep must hold integers, got dtype {sep.dtype}")
    pos = torch.arange(seq_len, device=sep.device)
    causal = pos.view(1, seq_len) <= pos.view(seq_len, 1)            # [S(query), S(key)]
    in_part_a = pos.view(1, 1, seq_len) < sep.view(-1, 1, 1)          # [B, 1, S(key)]
    return (causal.unsqueeze(0) | in_part_a).unsqueeze(1)            # [B, 1, S, S]


def _pad(ids: list[int], length: int, pad_id: int) -> list[int]:
    return ids + [pad_id] * (length - len(ids))


def classification_input(
    ids_a: list[int],
    ids_b: list[int] | None,
    *,
    cls_id: int,
    sep_id: int,
    eos_id: int,
    max_len: int,
    pad_id: int,
) -> dict:
    """GLM fine-tuning input `[CLS] A [SEP] B <eos>` (single sentence: `[CLS] A <eos>`).

    When the pair does not fit in `max_len`, tokens are dropped one at a time from the end
    of whichever of A/B is currently longer (A on a tie), as BERT-style pair truncation does.
    The whole real sequence is part A (`sep` = number of real tokens), so it is fully
    bidirectional; the padding after it is part B and lies after every real query, hence it
    is never visible to a real token.

    Returns a dict of tensors:
        input_ids     LongTensor [S]     (S = max_len, padded with pad_id)
        position_ids  LongTensor [2, S]  channel 0 = 0..S-1, channel 1 = zeros
        sep           LongTensor []      number of real tokens
        cls_index     LongTensor []      0, where [CLS] sits
    """
    ids_a = list(ids_a)
    ids_b = None if ids_b is None else list(ids_b)
    specials = 3 if ids_b is not None else 2
    budget = max_len - specials
    if budget < 0:
        raise GLMUserError(f"max_len {max_len} cannot hold the {specials} special tokens; "
                           "raise the maximum sequence length")
    while len(ids_a) + (len(ids_b) if ids_b is not None else 0) > budget:
        if ids_b is not None and len(ids_b) > len(ids_a):
            ids_b.pop()
        else:
            ids_a.pop()

    ids = [cls_id] + ids_a
    if ids_b is not None:
        ids += [sep_id] + ids_b
    ids.append(eos_id)
    n_real = len(ids)

    position_ids = torch.stack([torch.arange(max_len), torch.zeros(max_len, dtype=torch.long)])
    return {
        "input_ids": torch.tensor(_pad(ids, max_len, pad_id), dtype=torch.long),
        "position_ids": position_ids,
        "sep": torch.tensor(n_real, dtype=torch.long),
        "cls_index": torch.tensor(0, dtype=torch.long),
    }


def cloze_input(
    context_ids: list[int],
    *,
    mask_id: int,
    sop_id: int,
    max_len: int,
    pad_id: int,
) -> dict:
    """GLM cloze input: a pattern text with one [MASK], followed by <|startofpiece|>.

    The sop token opens the span that fills the [MASK]: it takes the [MASK]'s position in
    channel 0 and block position 1 in channel 1. The model's LM logits at the sop token score
    the first token of the answer (the verbalizer words).

    Args:
        context_ids: the pattern text, containing `mask_id` exactly once. The caller
            truncates it so that `len(context_ids) + 1 <= max_len`.

    Returns a dict of tensors:
        input_ids     LongTensor [S]     context + [sop], padded with pad_id (S = max_len)
        position_ids  LongTensor [2, S]  channel 0 = 0..len(context)-1, then the [MASK]
                                         position; channel 1 = zeros, then 1; padding 0
        sep           LongTensor []      len(context): the context is part A, sop is part B
        target_index  LongTensor []      index of the sop token (= len(context))
    """
    context_ids = list(context_ids)
    n_masks = context_ids.count(mask_id)
    if n_masks != 1:
        raise GLMUserError(
            f"cloze pattern must contain exactly one [MASK] (id {mask_id}), found {n_masks}"
        )
    n_real = len(context_ids) + 1
    if n_real > max_len:
        raise ValueError(
            f"cloze input needs {n_real} tokens (context {len(context_ids)} + sop) but "
            f"max_len is {max_len}; truncate the context before calling cloze_input"
        )
    mask_pos = context_ids.index(mask_id)
    ids = context_ids + [sop_id]
    positions = list(range(len(context_ids))) + [mask_pos]
    block_positions = [0] * len(context_ids) + [1]
    position_ids = torch.tensor(
        [_pad(positions, max_len, 0), _pad(block_positions, max_len, 0)], dtype=torch.long
    )
    return {
        "input_ids": torch.tensor(_pad(ids, max_len, pad_id), dtype=torch.long),
        "position_ids": position_ids,
        "sep": torch.tensor(len(context_ids), dtype=torch.long),
        "target_index": torch.tensor(len(context_ids), dtype=torch.long),
    }
