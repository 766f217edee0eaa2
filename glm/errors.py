"""The one exception type of the ``glm`` package for bad input (no ptv2_ds import here)."""
from __future__ import annotations


class GLMUserError(ValueError):
    """Bad checkpoint/tokenizer/config input: a missing or unreadable checkpoint file, an
    unknown preset or tokenizer kind, keys or shapes that do not fit the model, a pickle the
    weights-only loader refuses, a vocabulary that is not the one GLM uses. The message names
    the file/key/option and what to change. Shape checks on tensors passed to the model's
    ``forward`` (a caller's bug) stay plain ValueError."""
