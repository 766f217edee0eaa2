"""Data-file readers: UTF-8 errors name file/line/column, empty files, byte-order marks."""
import re

import pytest

from ptv2_ds.tasks.readers import DataFormatError, read_jsonl, read_lines, read_tsv


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_jsonl_latin1_byte_names_file_line_and_column(tmp_path):
    f = write(tmp_path / "train.jsonl",
              b'{"text": "ok", "label": 0}\n\n{"text": "caf\xe9", "label": 1}\n')
    with pytest.raises(DataFormatError) as err:
        list(read_jsonl(f))
    assert str(err.value) == (f"{f}:3: not valid UTF-8 (byte 0xe9 at column 14); "
                              "re-save the file as UTF-8")


def test_tsv_latin1_byte_column_counts_characters(tmp_path):
    # "naïve" is valid UTF-8 (2 bytes for ï); the column counts characters, not bytes
    f = write(tmp_path / "dev.tsv", b"sentence\tlabel\nfine\t1\nna\xc3\xafve caf\xe9\t0\n")
    rows = read_tsv(f)
    assert next(rows) == (2, {"sentence": "fine", "label": "1"})
    with pytest.raises(DataFormatError, match=re.escape(
            f"{f}:3: not valid UTF-8 (byte 0xe9 at column 10); re-save the file as UTF-8")):
        next(rows)


@pytest.mark.parametrize("name,data,reader,message", [
    ("a.tsv", b"", read_tsv, "no rows (the file is empty)"),
    ("b.tsv", b"sentence\tlabel\n\n", read_tsv, "no rows (only the header line)"),
    ("c.jsonl", b"", read_jsonl, "no rows (the file is empty or holds only blank lines)"),
    ("d.jsonl", b"\n  \n\r\n", read_jsonl, "no rows (the file is empty or holds only blank "
                                           "lines)"),
])
def test_empty_files_are_a_clear_error(tmp_path, name, data, reader, message):
    f = write(tmp_path / name, data)
    with pytest.raises(DataFormatError) as err:
        list(reader(f))
    assert str(err.value) == f"{f}: {message}"


def test_byte_order_mark_is_accepted(tmp_path):
    bom = b"\xef\xbb\xbf"
    tsv = write(tmp_path / "train.tsv", bom + "sentence\tlabel\r\nsé\t1\r\n".encode())
    assert list(read_tsv(tsv)) == [(2, {"sentence": "sé", "label": "1"})]
    jsonl = write(tmp_path / "train.jsonl", bom + b'{"label": true}\n')
    assert list(read_jsonl(jsonl)) == [(1, {"label": True})]


def test_read_lines(tmp_path):
    f = write(tmp_path / "x.conll", b"\xef\xbb\xbfEU B-ORG\r\n\nrejects O\nlast")
    assert list(read_lines(f)) == [(1, "EU B-ORG"), (2, ""), (3, "rejects O"), (4, "last")]
    bad = write(tmp_path / "bad.conll", b"EU B-ORG\n\xff O\n")
    lines = read_lines(bad)
    assert next(lines) == (1, "EU B-ORG")
    with pytest.raises(DataFormatError, match=re.escape(
            f"{bad}:2: not valid UTF-8 (byte 0xff at column 1)")):
        next(lines)
    # a missing file is reported when read_lines is called, naming the file
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.conll"))):
        read_lines(tmp_path / "none.conll")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        list(read_jsonl(tmp_path / "none.jsonl"))
