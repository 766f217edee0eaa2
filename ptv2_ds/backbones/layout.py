"""Token-level layout helpers shared by every backbone adapter."""
from __future__ import annotations

import torch

from ..errors import UserError

MASK_SLOT = "{mask}"


def truncate_pair(ids_a: list[int], ids_b: list[int] | None, budget: int
                  ) -> tuple[list[int], list[int] | None]:
    """Drop tokens from the end of the longer segment until both fit in ``budget`` tokens."""
    ids_a = list(ids_a)
    ids_b = None if ids_b is None else list(ids_b)
    if budget < 0:
        raise UserError("max sequence length leaves no room for the text (special tokens "
                        "and template words take it all); raise --max-seq-len")
    while len(ids_a) + (len(ids_b) if ids_b else 0) > budget:
        if ids_b and len(ids_b) >= len(ids_a):  # ties trim b, as transformers does
            ids_b.pop()
        else:
            ids_a.pop()
    return ids_a, ids_b


def _truncate_repeated(ids_a: list[int], ids_b: list[int] | None, copies_a: int,
                       copies_b: int, budget: int) -> tuple[list[int], list[int] | None]:
    """Like ``truncate_pair`` for a template that holds ``copies_a`` copies of a and
    ``copies_b`` of b: trim the longer segment (ties trim b) until
    ``copies_a * len(a) + copies_b * len(b) <= budget``. A segment with no copy is kept."""
    ids_a = list(ids_a)
    ids_b = None if ids_b is None else list(ids_b)
    if budget < 0:
        raise UserError("max sequence length leaves no room for the text (special tokens "
                        "and template words take it all); raise --max-seq-len")
    b_len = len(ids_b) if ids_b else 0
    while copies_a * len(ids_a) + copies_b * b_len > budget:
        trim_b = copies_b and b_len and (not copies_a or b_len >= len(ids_a))
        (ids_b if trim_b else ids_a).pop()
        b_len = len(ids_b) if ids_b else 0
    return ids_a, ids_b


def split_template(template: str) -> list[str]:
    """Split a cloze template such as ``"{a} ? {mask} , {b}"`` into slots and literal text."""
    parts, rest = [], template
    while rest:
        starts = [(rest.find(s), s) for s in ("{a}", "{b}", MASK_SLOT) if s in rest]
        if not starts:
            parts.append(rest)
            break
        pos, slot = min(starts)
        if pos:
            parts.append(rest[:pos])
        parts.append(slot)
        rest = rest[pos + len(slot):]
    if parts.count(MASK_SLOT) != 1:
        raise UserError(f"cloze template {template!r} must contain {MASK_SLOT} exactly once "
                        "(--template)")
    return [p for p in parts if p.strip()]


def render_cloze(template: str, ids_a: list[int], ids_b: list[int] | None, mask_id: int,
                 encode_text, budget: int) -> tuple[list[int], int]:
    """Fill a cloze template with token ids, truncating the longer text first.

    Returns the token ids (no special tokens around them) and the index of the mask token.
    ``encode_text`` turns a literal piece of the template into ids (no special tokens).
    """
    parts = split_template(template)
    if "{b}" in parts and ids_b is None:
        raise UserError(f"cloze template {template!r} has a {{b}} slot but the task has only "
                        "one text; use {a} and {mask} only (--template)")
    # literal pieces keep their leading space: BPE vocabularies (RoBERTa, GLM) encode " ?"
    # differently from "?"; WordPiece ignores it
    literal = {p: encode_text(p.rstrip()) for p in parts if p not in ("{a}", "{b}", MASK_SLOT)}
    # every occurrence counts: a literal or a text slot may appear several times
    fixed = 1 + sum(len(literal[p]) for p in parts if p in literal)
    ids_a, ids_b = _truncate_repeated(ids_a, ids_b if "{b}" in parts else None,
                                      parts.count("{a}"), parts.count("{b}"), budget - fixed)
    out: list[int] = []
    mask_index = -1
    for p in parts:
        if p == "{a}":
            out += ids_a
        elif p == "{b}":
            out += ids_b or []
        elif p == MASK_SLOT:
            mask_index = len(out)
            out.append(mask_id)
        else:
            out += literal[p]
    return out, mask_index


class SpecialTokenLayout:
    """Where a Hugging Face tokenizer puts its special tokens around one or two segments.

    Transformers 5 dropped ``build_inputs_with_special_tokens`` from fast tokenizers, so we
    read the layout once from the tokenizer itself: encode two short probe texts with special
    tokens and split the result at the non-special runs. BERT gives ``[CLS] a [SEP] b [SEP]``
    with token types 0/1; RoBERTa ``<s> a </s></s> b </s>``.
    """

    def __init__(self, tokenizer):
        self.single = self._probe(tokenizer, pair=False)
        self.pair = self._probe(tokenizer, pair=True)

    @staticmethod
    def _probe(tokenizer, pair: bool):
        enc = tokenizer("a", "b" if pair else None, add_special_tokens=True,
                        return_special_tokens_mask=True, return_token_type_ids=True)
        ids, special = enc["input_ids"], enc["special_tokens_mask"]
        types = enc.get("token_type_ids") or [0] * len(ids)
        # regions: specials before segment 1, between, after; and each segment's token type
        regions: list[list[int]] = [[]]
        region_types: list[list[int]] = [[]]
        seg_types: list[int] = []
        inside = False
        for tok, is_special, typ in zip(ids, special, types):
            if is_special:
                if inside:
                    regions.append([])
                    region_types.append([])
                    inside = False
                regions[-1].append(tok)
                region_types[-1].append(typ)
            elif not inside:
                inside = True
                seg_types.append(typ)
        if len(seg_types) != (2 if pair else 1):
            raise UserError(f"could not read the special-token layout of "
                            f"{type(tokenizer).__name__}: its tokenizer does not put special "
                            "tokens around one or two segments as BERT/RoBERTa do; use a "
                            "supported --model")
        while len(regions) < len(seg_types) + 1:
            regions.append([])
            region_types.append([])
        return regions, region_types, seg_types

    def build(self, ids_a: list[int], ids_b: list[int] | None = None
              ) -> tuple[list[int], list[int]]:
        """Token ids and token-type ids with the special tokens in place."""
        regions, region_types, seg_types = self.pair if ids_b is not None else self.single
        segments = [ids_a] if ids_b is None else [ids_a, ids_b]
        ids, types = list(regions[0]), list(region_types[0])
        for seg, seg_type, region, rtypes in zip(segments, seg_types, regions[1:], region_types[1:]):
            ids += seg + region
            types += [seg_type] * len(seg) + rtypes
        return ids, types

    def num_special(self, pair: bool) -> int:
        return sum(len(r) for r in (self.pair if pair else self.single)[0])


def pad_features(features: list[dict], pad_values: dict[str, int]) -> dict[str, torch.Tensor]:
    """Pad per-example features to the batch's longest ``input_ids``.

    Keys in ``pad_values`` are sequences (or lists of sequences, such as GLM's 2-row
    ``position_ids``) padded with that value; every other key holds one int per example
    (``sep``, ``mask_index``, ``labels``) and becomes a [B] tensor. ``attention_mask`` [B, S]
    marks the real tokens."""
    width = max(len(f["input_ids"]) for f in features)

    def pad(seq: list[int], value: int) -> list[int]:
        return seq + [value] * (width - len(seq))

    batch = {}
    for key, value in pad_values.items():
        rows = [f[key] for f in features]
        nested = bool(rows[0]) and isinstance(rows[0][0], list)
        batch[key] = torch.tensor([[pad(r, value) for r in x] if nested else pad(x, value)
                                   for x in rows])
    batch["attention_mask"] = torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features])
    for key in features[0]:
        if key not in pad_values:
            batch[key] = torch.tensor([f[key] for f in features])
    return batch
