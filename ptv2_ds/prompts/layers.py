"""Which transformer layers get a deep prompt (paper Fig. 4, "prompt depth")."""
from __future__ import annotations

from ..errors import UserError


def parse_prefix_layers(spec: str | int | list | tuple, num_layers: int) -> tuple[int, ...]:
    """Turn a layer selection into sorted, 0-based layer indices.

    Accepted forms (layers are numbered 0 .. num_layers-1):
      - ``"all"``           every layer
      - ``"16-23"``         an inclusive range
      - ``"0,5,11"``        a list (ranges may appear in it: ``"0-3,10"``)
      - ``"last:8"``        the last 8 layers (the paper's "layers 17-24 of 24")
      - ``"first:4"``       the first 4 layers
    """
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(x) for x in spec)
    spec = str(spec).strip().lower()
    if num_layers <= 0:
        raise ValueError(f"the backbone reports {num_layers} layers; cannot place prompts")
    if spec == "all":
        return tuple(range(num_layers))
    for word in ("last", "first"):
        if spec.startswith(word + ":"):
            count = _int(spec[len(word) + 1:], spec)
            if not 1 <= count <= num_layers:
                raise UserError(
                    f"prefix layers {spec!r}: count must be in 1..{num_layers} for this backbone")
            start = num_layers - count if word == "last" else 0
            return tuple(range(start, start + count))
    layers: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise UserError(f"prefix layers {spec!r}: empty item (--prefix-layers)")
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            lo, hi = _int(lo_text, spec), _int(hi_text, spec)
            if lo > hi:
                raise UserError(f"prefix layers {spec!r}: range {part!r} runs backwards")
            layers.update(range(lo, hi + 1))
        else:
            layers.add(_int(part, spec))
    bad = sorted(i for i in layers if not 0 <= i < num_layers)
    if bad:
        raise UserError(
            f"prefix layers {spec!r}: layer(s) {bad} out of range; this backbone has "
            f"{num_layers} layers numbered 0..{num_layers - 1} (for the paper's 'layers 17-24 "
            f"of 24' write '16-23' or 'last:8')")
    return tuple(sorted(layers))


def _int(text: str, spec: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(
            f"prefix layers {spec!r}: {text.strip()!r} is not a layer number "
            "(use 'all', '16-23', '0,5,11', 'last:8' or 'first:4')") from None
