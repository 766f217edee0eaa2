"""Malformed input files through the real CLI: exit 2, a ``file:line: ...`` message on stderr,
no traceback, and no model loaded (data is read and checked before the backbone).

One table row per malformed input: the task, which file is bad (train, dev or test), its
bytes, and the message expected on stderr. The other files of a row are well-formed.
"""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import pytest

from ptv2_ds.cli.main import main

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tagging"

# ---- well-formed files per task ---------------------------------------------------------------
SST2 = "sentence\tlabel\na fine , moving film\t1\na dull and boring plot\t0\n"
MNLI = ("sentence1\tsentence2\tgold_label\n"
        "A man eats .\tSomeone eats .\tentailment\n"
        "A man eats .\tNobody eats .\tcontradiction\n")


def jsonl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


RTE = jsonl({"premise": "A man eats .", "hypothesis": "Someone eats .", "label": "entailment"},
            {"premise": "A man eats .", "hypothesis": "Nobody eats .",
             "label": "not_entailment"})
CB = jsonl({"premise": "It rained .", "hypothesis": "It was wet .", "label": "entailment"},
           {"premise": "It rained .", "hypothesis": "It was dry .", "label": "contradiction"})
BOOLQ = jsonl({"question": "is it wet", "passage": "It rained all day .", "label": True},
              {"question": "is it dry", "passage": "It rained all day .", "label": False})
SQUAD = json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [{
    "context": "The cat sat on the mat .",
    "qas": [{"id": "q1", "question": "Where did the cat sit ?", "is_impossible": False,
             "answers": [{"text": "the mat", "answer_start": 15}]},
            {"id": "q2", "question": "Who flew ?", "is_impossible": True, "answers": []}]}]}]})


def fixture(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


GOOD = {
    "sst2": (SST2, "tsv"), "mnli": (MNLI, "tsv"), "rte": (RTE, "jsonl"), "cb": (CB, "jsonl"),
    "boolq": (BOOLQ, "jsonl"),
    "conll03": (fixture("conll03_train.txt"), "txt"),
    "conll04": (fixture("conll04_sample.txt"), "txt"),
    "ontonotes": (fixture("ontonotes_sample.sd.conllx"), "sd.conllx"),
    "tagging": (fixture("tagging_train.txt"), "txt"),
    "conll05": (fixture("conll05_train.txt"), "txt"),
    "conll12": (fixture("conll05_train.txt"), "txt"),
    "squad_v2": (SQUAD, "json"),
}

ONTO_LINE = "1\tPeople\t_\tNNS\tNNS\t_\t3\tnsubj\t_\t_\t{tag}\n"


@dataclass
class Case:
    id: str
    task: str
    content: str | bytes   # the bad file
    expect: str            # substring of stderr; "bad.EXT" is the bad file's name
    role: str = "train"    # which file is bad: train, dev (--validation-file) or test
    args: tuple = ()


CASES = [
    # ---- GLUE TSV ---------------------------------------------------------------------------
    Case("sst2-column-count", "sst2", "sentence\tlabel\nfine\t1\nbroken row\n",
         "bad.tsv:3: expected 2 tab-separated columns (sentence, label), found 1"),
    Case("sst2-unknown-label", "sst2", "sentence\tlabel\nfine\t1\nokay\t7\n",
         "bad.tsv:3: label '7' is not one of ['0', '1'] for task sst2"),
    Case("sst2-missing-column", "sst2", "text\tlabel\nfine\t1\n",
         "bad.tsv:2: missing field 'sentence' (found text, label)"),
    Case("sst2-empty-sentence", "sst2", "sentence\tlabel\n  \t1\n",
         "bad.tsv:2: empty text in sentence (a row needs words to classify)"),
    Case("sst2-missing-label", "sst2", "sentence\tlabel\nfine\t\n",
         "bad.tsv:2: missing label field 'label'"),
    Case("sst2-non-utf8", "sst2", b"sentence\tlabel\ncaf\xe9 film\t1\n",
         "bad.tsv:2: not valid UTF-8 (byte 0xe9 at column 4); re-save the file as UTF-8"),
    Case("sst2-empty-file", "sst2", "", "bad.tsv: no rows (the file is empty)"),
    Case("sst2-header-only", "sst2", "sentence\tlabel\n",
         "bad.tsv: no rows (only the header line)"),
    Case("sst2-empty-header", "sst2", "\nfine\t1\n",
         "bad.tsv:1: empty header; a GLUE TSV starts with column names"),
    Case("mnli-column-count", "mnli", MNLI + "A man eats .\tneutral\n",
         "bad.tsv:4: expected 3 tab-separated columns (sentence1, sentence2, gold_label), "
         "found 2"),
    Case("mnli-unknown-label", "mnli", MNLI + "A man eats .\tHe eats .\tentails\n",
         "bad.tsv:4: label 'entails' is not one of ['entailment', 'neutral', 'contradiction'] "
         "for task mnli"),
    Case("mnli-missing-column", "mnli", "sentence1\tgold_label\nA man eats .\tneutral\n",
         "bad.tsv:2: missing field 'sentence2' (found sentence1, gold_label)"),
    Case("mnli-empty-pair", "mnli", "sentence1\tsentence2\tgold_label\n \t \tneutral\n",
         "bad.tsv:2: empty text in sentence1 and sentence2"),
    Case("mnli-dev-label-outside-set", "mnli", MNLI + "A man .\tA man .\tunknown\n",
         "bad.tsv:4: label 'unknown' is not one of", role="dev"),
    # ---- SuperGLUE JSONL --------------------------------------------------------------------
    Case("rte-bad-json", "rte", RTE + '{"premise": "a", "hypothesis": \n',
         "bad.jsonl:3: not valid JSON (Expecting value)"),
    Case("rte-not-an-object", "rte", '["A man eats .", "Someone eats ."]\n',
         "bad.jsonl:1: expected a JSON object, found list"),
    Case("rte-missing-field", "rte", jsonl({"premise": "A man eats .", "label": "entailment"}),
         "bad.jsonl:1: missing field 'hypothesis' (found premise, label)"),
    Case("rte-null-field", "rte",
         jsonl({"premise": "A man .", "hypothesis": None, "label": "entailment"}),
         "bad.jsonl:1: missing field 'hypothesis'"),
    Case("rte-blank-lines-only", "rte", "\n  \n",
         "bad.jsonl: no rows (the file is empty or holds only blank lines)"),
    Case("cb-non-string-text", "cb", jsonl({"premise": 5, "hypothesis": "x", "label": "neutral"}),
         "bad.jsonl:1: field 'premise' must be text, got 5"),
    Case("cb-empty-premise-and-hypothesis", "cb",
         jsonl({"premise": "", "hypothesis": "  ", "label": "neutral"}),
         "bad.jsonl:1: empty text in premise and hypothesis"),
    Case("cb-unknown-label", "cb", jsonl({"premise": "a", "hypothesis": "b", "label": "maybe"}),
         "bad.jsonl:1: label 'maybe' is not one of ['entailment', 'contradiction', 'neutral'] "
         "for task cb"),
    Case("boolq-non-utf8", "boolq",
         BOOLQ.encode() + b'{"question": "is it \xff", "passage": "p", "label": true}\n',
         "bad.jsonl:3: not valid UTF-8 (byte 0xff at column 21)"),
    Case("boolq-missing-label", "boolq", jsonl({"question": "is it", "passage": "It is ."}),
         "bad.jsonl:1: missing label field 'label'"),
    Case("boolq-numeric-label", "boolq",
         jsonl({"question": "is it", "passage": "It is .", "label": 1}),
         "bad.jsonl:1: label '1' is not one of ['false', 'true'] for task boolq"),
    # ---- CoNLL columns ----------------------------------------------------------------------
    Case("conll03-column-count", "conll03", "EU NNP B-NP B-ORG\nrejects VBZ O\n",
         "bad.txt:2: expected 4 columns (token POS chunk NER), found 3"),
    Case("conll03-unknown-tag", "conll03", "EU NNP B-NP B-ORG\nrejects VBZ B-VP B-FOO\n",
         "bad.txt:2: tag 'B-FOO' is not one of the conll03 tags"),
    Case("conll03-test-column-count", "conll03", "EU NNP B-NP\nrejects VBZ\n",
         "bad.txt:2: expected 3 columns like line 1, found 2", role="test"),
    Case("conll04-unknown-tag", "conll04", "Very O\nGrande B-Person\n",
         "bad.txt:2: tag 'B-Person' is not one of the conll04 tags"),
    Case("conll04-missing-tag-column", "conll04", fixture("conll04_bad_missing_tag.txt"),
         "bad.txt:2: expected 2 columns (token TAG), found 1"),
    Case("conll04-non-utf8", "conll04", b"Very O\nGr\xe4nde B-Loc\n",
         "bad.txt:2: not valid UTF-8 (byte 0xe4 at column 3)"),
    Case("ontonotes-unknown-tag", "ontonotes", ONTO_LINE.format(tag="B-PERSONA"),
         "bad.sd.conllx:1: tag 'B-PERSONA' is not one of the ontonotes tags"),
    Case("ontonotes-empty-token", "ontonotes", fixture("ontonotes_bad_empty_token.sd.conllx"),
         "bad.sd.conllx:2: empty token"),
    Case("ontonotes-column-count", "ontonotes",
         ONTO_LINE.format(tag="O") + "2\tin\t_\tIN\tO\n",
         "bad.sd.conllx:2: expected 11 columns like line 1, found 5"),
    Case("tagging-dev-tag-outside-training-set", "tagging",
         fixture("tagging_dev_unknown_tag.txt"),
         "bad.txt:5: tag 'B-computer' is not in the training label set", role="dev"),
    Case("tagging-ragged-columns", "tagging", "The DT O\nnew O\n",
         "bad.txt:2: expected 3 columns like line 1, found 2"),
    # ---- SRL (CoNLL-05/12 lines) ------------------------------------------------------------
    Case("conll05-missing-separator", "conll05", "1 John said he left B-A0 B-V B-A1 I-A1\n",
         "bad.txt:1: missing '|||' between the words and their tags"),
    Case("conll05-tag-count", "conll05", "1 John said ||| B-A0 B-V B-A1\n",
         "bad.txt:1: 3 tags for 2 words"),
    Case("conll05-predicate-out-of-range", "conll05", "5 John said he ||| B-A0 B-V O\n",
         "bad.txt:1: predicate index 5 is out of range for 3 words (0-based)"),
    Case("conll05-predicate-not-an-int", "conll05", "said John said he ||| B-A0 B-V O\n",
         "bad.txt:1: the predicate index 'said' is not an integer"),
    Case("conll05-two-separators", "conll05", "1 John said ||| B-A0 B-V ||| O\n",
         "bad.txt:1: expected one '|||' between words and tags, found 2"),
    Case("conll12-dev-tag-outside-training-set", "conll12",
         fixture("conll12_dev_unknown_tag.txt"),
         "bad.txt:1: tag 'B-AM-MNR' is not in the training label set", role="dev"),
    # ---- SQuAD 2.0 JSON (the QA family) -----------------------------------------------------
    # (one JSON document: errors past the syntax name the JSON path and question id)
    Case("squad-bad-json", "squad_v2", '{"version": "v2.0",\n "data": [\n',
         "bad.json:3: not valid JSON (Expecting value"),
    Case("squad-missing-data", "squad_v2", '{"version": "v2.0"}\n',
         'bad.json: expected SQuAD JSON, an object with a "data" list of articles'),
    Case("squad-answer-start-off-its-text", "squad_v2",
         SQUAD.replace('"answer_start": 15', '"answer_start": 4'),
         "bad.json: question q1: answer_start 4 does not point at 'the mat' (the context "
         "there reads 'cat sat')"),
    Case("squad-empty-question", "squad_v2", SQUAD.replace("Where did the cat sit ?", "  "),
         "bad.json: question q1: empty question"),
]


def write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


@pytest.fixture
def no_backbone(monkeypatch):
    """A data error must stop the run before any backbone is loaded."""
    import ptv2_ds.builder

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was loaded before the data was checked")

    monkeypatch.setattr(ptv2_ds.builder, "load_backbone", refuse)


def train_argv(tiny_bert_dir, task, files, out, *extra):
    argv = ["train", "--task", task, "--model", tiny_bert_dir, "--train-file", files["train"],
            "--validation-file", files["dev"], "--output-dir", str(out), "--max-steps", "1"]
    if "test" in files:
        argv += ["--test-file", files["test"]]
    return argv + list(extra)


def assert_bad_input(rc, err, expect):
    assert "Traceback" not in err, err
    assert rc == 2, err
    assert expect in err, err
    assert err.lstrip().startswith("error: "), err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_file_is_a_file_line_message(case, tmp_path, tiny_bert_dir, capsys,
                                               no_backbone):
    good, ext = GOOD[case.task]
    files = {role: write(tmp_path / f"{role}.{ext}", good) for role in ("train", "dev")}
    files[case.role] = write(tmp_path / f"bad.{ext}", case.content)
    rc = main(train_argv(tiny_bert_dir, case.task, files, tmp_path / "out", *case.args))
    assert_bad_input(rc, capsys.readouterr().err, case.expect)


def test_table_covers_every_format():
    assert len(CASES) >= 30
    tasks = {c.task for c in CASES}
    for task in ("sst2", "mnli", "rte", "cb", "boolq", "conll03", "conll04", "ontonotes",
                 "tagging", "conll05", "conll12", "squad_v2"):
        assert task in tasks, task
    assert {c.role for c in CASES} == {"train", "dev", "test"}


# ---- bad options that are caught before any model is built -------------------------------------
OPTION_CASES = [
    ("unknown-task", ["--task", "qqp"], "unknown task 'qqp'; choose one of"),
    ("template-b-slot-on-a-single-text-task",
     ["--task", "sst2", "--head", "verbalizer", "--template", "{a} ? {mask} , {b}"],
     "has a {b} slot but task sst2 has only one text"),
    ("template-without-mask",
     ["--task", "mnli", "--head", "verbalizer", "--template", "{a} ? {b}"],
     "must contain {mask} exactly once"),
    ("tagging-same-columns", ["--task", "tagging", "--token-column", "1", "--tag-column", "1"],
     "--token-column and --tag-column name the same column (1)"),
    ("tagging-negative-token-column", ["--task", "tagging", "--token-column", "-2"],
     "--token-column counts from 0, got -2"),
]


@pytest.mark.parametrize("argv,expect", [c[1:] for c in OPTION_CASES],
                         ids=[c[0] for c in OPTION_CASES])
def test_bad_option_is_a_message(argv, expect, tmp_path, tiny_bert_dir, capsys, no_backbone):
    task = argv[argv.index("--task") + 1]
    good, ext = GOOD.get(task, GOOD["sst2"])
    files = {role: write(tmp_path / f"{role}.{ext}", good) for role in ("train", "dev")}
    base = train_argv(tiny_bert_dir, "sst2", files, tmp_path / "out")
    rc = main(base + argv)  # a later --task overrides the first
    assert_bad_input(rc, capsys.readouterr().err, expect)


def test_too_few_rows_to_carve_a_dev_split(tmp_path, tiny_bert_dir, capsys, no_backbone):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\nfine\t1\n")
    rc = main(["train", "--task", "sst2", "--model", tiny_bert_dir, "--train-file", train,
               "--output-dir", str(tmp_path / "out"), "--max-steps", "1"])
    assert_bad_input(rc, capsys.readouterr().err,
                     "train.tsv: too few rows (1) or groups (1) to carve a dev split; pass "
                     "--validation-file")


def test_missing_data_file_is_named(tmp_path, tiny_bert_dir, capsys, no_backbone):
    dev = write(tmp_path / "dev.tsv", SST2)
    rc = main(train_argv(tiny_bert_dir, "sst2", {"train": str(tmp_path / "nope.tsv"),
                                                 "dev": dev}, tmp_path / "out"))
    assert_bad_input(rc, capsys.readouterr().err, "data file not found: ")


# ---- --skip-bad-rows, and eval/predict on its artifact -----------------------------------------
@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory, tiny_bert_dir):
    """sst2 with two malformed training rows, trained one step with --skip-bad-rows."""
    d = tmp_path_factory.mktemp("skip")
    rows = [f"{w} film\t{i % 2}" for i, w in enumerate(
        "fine dull great boring good bad lovely awful".split())]
    rows[2:2] = ["broken label\t7", " \t1"]  # lines 4 and 5
    train = write(d / "train.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    dev = write(d / "dev.tsv", SST2)
    err = io.StringIO()
    with redirect_stderr(err):
        rc = main(["train", "--task", "sst2", "--model", tiny_bert_dir, "--train-file", train,
                   "--validation-file", dev, "--output-dir", str(d / "out"), "--max-steps", "1",
                   "--eval-every", "1", "--batch-size", "4", "--max-seq-len", "16",
                   "--skip-bad-rows"])
    return rc, err.getvalue(), d / "out"


def test_skip_bad_rows_trains_and_counts_them(skipped_run):
    rc, err, out = skipped_run
    assert rc == 0, err
    assert "Traceback" not in err
    assert "train.tsv: skipped 2 malformed row(s) (--skip-bad-rows); first: " in err
    assert "train.tsv:4: label '7' is not one of ['0', '1']" in err
    assert (out / "metrics.json").is_file() and (out / "artifact").is_dir()


def test_eval_with_a_malformed_file_stops_before_loading(skipped_run, tmp_path, capsys,
                                                          no_backbone):
    artifact = str(skipped_run[2] / "artifact")
    data = write(tmp_path / "bad.tsv", "sentence\tlabel\nfine\t1\nokay\tpositive\n")
    rc = main(["eval", "--artifact", artifact, "--data", data])
    assert_bad_input(rc, capsys.readouterr().err,
                     "bad.tsv:3: label 'positive' is not one of ['0', '1'] for task sst2")


def test_predict_with_a_non_utf8_file_stops_before_loading(skipped_run, tmp_path, capsys,
                                                            no_backbone):
    artifact = str(skipped_run[2] / "artifact")
    data = write(tmp_path / "bad.tsv", b"sentence\nfine\nna\xefve\n")
    rc = main(["predict", "--artifact", artifact, "--input", data, "--output",
               str(tmp_path / "p.jsonl")])
    assert_bad_input(rc, capsys.readouterr().err, "bad.tsv:3: not valid UTF-8 (byte 0xef")


def test_eval_with_another_task_than_the_artifacts(skipped_run, tmp_path, capsys, no_backbone):
    artifact = str(skipped_run[2] / "artifact")
    data = write(tmp_path / "dev.tsv", MNLI)
    rc = main(["eval", "--artifact", artifact, "--data", data, "--task", "mnli"])
    assert_bad_input(rc, capsys.readouterr().err,
                     "task mnli has labels ['entailment', 'neutral', 'contradiction'] but the "
                     "artifact was trained on ['0', '1']")


def test_glm_bad_input_is_bad_input_for_the_cli():
    import subprocess
    import sys

    from glm.checkpoint import CheckpointError
    from glm.config import GLMConfig
    from glm.errors import GLMUserError
    from ptv2_ds.errors import USER_ERRORS
    from ptv2_ds.tasks.readers import DataFormatError

    for cls in (CheckpointError, GLMUserError, DataFormatError, FileNotFoundError):
        assert issubclass(cls, USER_ERRORS), cls
    with pytest.raises(GLMUserError, match="unknown GLM preset 'glm-huge'"):
        GLMConfig.from_preset("glm-huge")
    # the glm package stands alone: its errors module imports nothing from ptv2_ds
    code = ("import sys, glm.errors, glm.config; "
            "assert not [m for m in sys.modules if m.startswith('ptv2_ds')]")
    subprocess.run([sys.executable, "-c", code], check=True)
