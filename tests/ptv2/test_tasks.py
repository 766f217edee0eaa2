"""Loaders for the published formats: GLUE TSV and SuperGLUE JSONL."""
import json

import pytest

from ptv2_ds.tasks import DataFormatError, build_task, load_splits
from tests.conftest import SST2_SAMPLE


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_reads_real_sst2_sample():
    rows = build_task("sst2").read_file(SST2_SAMPLE / "dev.tsv")
    assert len(rows) == 872
    assert {r.label for r in rows} == {"0", "1"}
    assert all(r.text_b is None and r.text_a for r in rows)


def test_reads_glue_mnli_tsv_by_column_name(tmp_path):
    header = "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    path = write(tmp_path, "dev_matched.tsv",
                 header + "\n0\tfiction\tA man sleeps.\tA person rests.\tentailment\tentailment\n"
                 "1\tfiction\tIt rains.\tIt is dry.\tcontradiction\tcontradiction\n")
    rows = build_task("mnli").read_file(path)
    assert [(r.text_a, r.text_b, r.label) for r in rows] == [
        ("A man sleeps.", "A person rests.", "entailment"),
        ("It rains.", "It is dry.", "contradiction")]


@pytest.mark.parametrize("task,row,label", [
    ("rte", {"premise": "p", "hypothesis": "h", "label": "not_entailment", "idx": 0},
     "not_entailment"),
    ("cb", {"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0}, "neutral"),
    ("boolq", {"question": "q", "passage": "p", "label": True, "idx": 0}, "true"),
])
def test_reads_superglue_jsonl(tmp_path, task, row, label):
    path = write(tmp_path, "train.jsonl", json.dumps(row) + "\n\n" + json.dumps(row) + "\n")
    rows = build_task(task).read_file(path)
    assert len(rows) == 2 and rows[0].label == label


def test_empty_texts_are_refused_unless_skipped(tmp_path, capsys):
    good = {"premise": "p", "hypothesis": "h", "label": "entailment"}
    empty = {"premise": "", "hypothesis": " ", "label": "entailment"}
    path = write(tmp_path, "e.jsonl", json.dumps(good) + "\n" + json.dumps(empty) + "\n")
    with pytest.raises(DataFormatError, match=r"e.jsonl:2: empty text in premise and hypothesis"):
        build_task("rte").read_file(path)
    rows = build_task("rte").read_file(path, skip_bad_rows=True)
    assert len(rows) == 1
    assert "skipped 1 malformed row(s)" in capsys.readouterr().err


def test_unlabeled_test_rows(tmp_path):
    path = write(tmp_path, "test.jsonl", json.dumps({"premise": "p", "hypothesis": "h",
                                                     "idx": 3}) + "\n")
    assert build_task("rte").read_file(path, require_labels=False)[0].label is None
    with pytest.raises(DataFormatError, match=r"test.jsonl:1: missing label"):
        build_task("rte").read_file(path)


@pytest.mark.parametrize("task,name,text,needle", [
    ("sst2", "bad.tsv", "sentence\tlabel\ngood film\t1\nno label here\n",
     r"bad.tsv:3: expected 2 tab-separated columns"),
    ("sst2", "bad.tsv", "sentence\tlabel\ngood film\t7\n", r"bad.tsv:2: label '7' is not one of"),
    ("rte", "bad.jsonl", '{"premise": "p", "hypothesis": "h", "label": "entailment"}\n{oops\n',
     r"bad.jsonl:2: not valid JSON"),
    ("rte", "bad.jsonl", '{"premise": "p", "label": "entailment"}\n',
     r"bad.jsonl:1: missing field 'hypothesis'"),
    ("rte", "bad.jsonl", '[1, 2]\n', r"bad.jsonl:1: expected a JSON object"),
    ("cb", "bad.jsonl", '{"premise": "p", "hypothesis": "h", "label": "maybe"}\n',
     r"bad.jsonl:1: label 'maybe' is not one of"),
])
def test_malformed_rows_name_file_and_line(tmp_path, task, name, text, needle):
    with pytest.raises(DataFormatError, match=needle):
        build_task(task).read_file(write(tmp_path, name, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        build_task("sst2").read_file(tmp_path / "nope.tsv")


def test_dev_carve_is_seeded_and_disjoint():
    train_file = str(SST2_SAMPLE / "train.tsv")
    a = load_splits(build_task("sst2"), train_file, dev_fraction=0.1, seed=3)
    b = load_splits(build_task("sst2"), train_file, dev_fraction=0.1, seed=3)
    c = load_splits(build_task("sst2"), train_file, dev_fraction=0.1, seed=4)
    assert a["dev"] == b["dev"] and a["dev"] != c["dev"]
    assert len(a["dev"]) == 400 and len(a["train"]) == 3600


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'qqp'"):
        build_task("qqp")


@pytest.mark.parametrize("task", ["sst2", "conll03", "squad_v2", "conll05"])
def test_hub_data_offline_is_a_message_naming_local_files(task):
    """Tests run with HF_HUB_OFFLINE=1: every family says to pass local files."""
    from ptv2_ds.errors import UserError
    with pytest.raises(UserError, match="--train-file/--validation-file"):
        build_task(task).read_hub("train")
