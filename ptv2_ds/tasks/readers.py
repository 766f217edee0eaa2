"""Readers for the published data formats, with errors that name the file and line.

GLUE TSV (a header row, tab-separated, no quoting) and SuperGLUE JSONL (one JSON object per
line). Each reader yields ``(line_number, row_dict)``. Files are UTF-8 (a leading byte-order
mark is accepted); ``read_lines`` is the shared line source, also for other text formats.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import UserError


class DataFormatError(UserError):
    """A malformed data file; the message names the file and line."""


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for every line of a UTF-8 text file, numbered from 1, with the
    line ending (``\\n`` or ``\\r\\n``) removed and a leading byte-order mark dropped.

    Raises FileNotFoundError naming a missing file (at the call), and DataFormatError naming
    the file, line and column of the first byte that is not valid UTF-8 (when reached)."""
    path = Path(path)
    _check_exists(path)
    return _decoded_lines(path)


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                column = len(raw[:e.start].decode("utf-8")) + 1  # the bytes before are valid
                raise DataFormatError(
                    f"{path}:{number}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                    f"{column}); re-save the file as UTF-8") from None
            yield number, text


def read_tsv(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """GLUE-style TSV: the first line holds column names, every row the same column count."""
    path = Path(path)
    lines = read_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataFormatError(f"{path}: no rows (the file is empty)")
    header = first[1].split("\t")
    if header == [""]:
        raise DataFormatError(f"{path}:1: empty header; a GLUE TSV starts with column names")
    rows = 0
    for number, line in lines:
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataFormatError(
                f"{path}:{number}: expected {len(header)} tab-separated columns "
                f"({', '.join(header)}), found {len(cells)}")
        rows += 1
        yield number, dict(zip(header, cells))
    if not rows:
        raise DataFormatError(f"{path}: no rows (only the header line)")


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """One JSON object per line (SuperGLUE)."""
    path = Path(path)
    rows = 0
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, "
                                  f"found {type(row).__name__}")
        rows += 1
        yield number, row
    if not rows:
        raise DataFormatError(f"{path}: no rows (the file is empty or holds only blank lines)")


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
