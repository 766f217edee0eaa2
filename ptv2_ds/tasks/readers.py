"""Readers for the published data formats, with errors that name the file and line.

GLUE TSV (a header row, tab-separated, no quoting) and SuperGLUE JSONL (one JSON object per
line). Each reader yields ``(line_number, row_dict)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


class DataFormatError(ValueError):
    """A malformed data file; the message names the file and line."""


def read_tsv(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """GLUE-style TSV: the first line holds column names, every row the same column count."""
    path = Path(path)
    _check_exists(path)
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").rstrip("\r").split("\t")
        if not header or header == [""]:
            raise DataFormatError(f"{path}:1: empty header; a GLUE TSV starts with column names")
        for number, line in enumerate(f, start=2):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != len(header):
                raise DataFormatError(
                    f"{path}:{number}: expected {len(header)} tab-separated columns "
                    f"({', '.join(header)}), found {len(cells)}")
            yield number, dict(zip(header, cells))


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """One JSON object per line (SuperGLUE)."""
    path = Path(path)
    _check_exists(path)
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{number}: expected a JSON object, "
                                      f"found {type(row).__name__}")
            yield number, row


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
