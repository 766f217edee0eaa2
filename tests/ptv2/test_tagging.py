"""The tagging family (NER, SRL): readers, sub-token alignment, windows, decoding, span F1."""
import json
import random
from pathlib import Path

import pytest
import torch

from ptv2_ds.metrics.spans import drop_types, ner_scores, span_scores, srl_scores
from ptv2_ds.tasks.base import build_task, load_splits
from ptv2_ds.tasks.readers import DataFormatError
from ptv2_ds.tasks.tagging import (CONLL03_LABELS, CONLL04_LABELS, ONTONOTES_LABELS,
                                   TaggedSentence, assign_words, plan_windows)
from tests.conftest import SHARED_DATA

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tagging"
CONLL04 = SHARED_DATA / "conll04"


def fx(name: str) -> str:
    return str(FIX / name)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def one_hot_results(task, encoded, backbone):
    """batch_results on "logits" that are one-hot gold labels (label -100 -> class 0)."""
    batch = task.collate(encoded.features, backbone)
    labels = batch["labels"].clamp(min=0)
    outputs = torch.nn.functional.one_hot(labels, len(task.labels)).float()
    return task.batch_results(outputs, batch)


# ---- registry ------------------------------------------------------------------------------
def test_registered_tasks_and_attributes():
    for name in ("conll03", "conll04", "ontonotes", "tagging", "conll05", "conll12"):
        task = build_task(name, head="linear", template=None, doc_stride=128)  # unknown: ignored
        assert task.family == "tagging" and task.main_metric == "f1"
        assert task.heads == {"linear": "token"} and task.pad_values == {"labels": -100}
        assert task.default_max_seq_len == 256
    assert build_task("conll03").labels == CONLL03_LABELS
    assert build_task("conll04").labels == ("O", "B-Loc", "B-Peop", "B-Org", "B-Other",
                                            "I-Loc", "I-Peop", "I-Org", "I-Other")
    assert len(ONTONOTES_LABELS) == 37 and ONTONOTES_LABELS[-1] == "O"
    assert build_task("conll03").hub == ("conll2003",)
    assert "f1_with_v" in build_task("conll05").metrics
    with pytest.raises(ValueError, match="no Hugging Face hub data set; pass --train-file"):
        build_task("conll12").read_hub("train")


# ---- readers -------------------------------------------------------------------------------
def test_conll03_docstart_and_no_trailing_blank_line():
    rows = build_task("conll03").read_file(fx("conll03_train.txt"))
    assert [len(r.words) for r in rows] == [9, 2, 2]
    assert rows[0].words[:3] == ["EU", "rejects", "German"]
    assert rows[0].tags[:3] == ["B-ORG", "O", "B-MISC"]
    assert rows[-1] == TaggedSentence(["BRUSSELS", "1996-08-22"], ["B-LOC", "O"])


def test_crlf_line_endings():
    assert b"\r\n" in (FIX / "conll03_crlf.txt").read_bytes()
    rows = build_task("conll03").read_file(fx("conll03_crlf.txt"))
    assert [(r.words, r.tags) for r in rows] == [
        (["EU", "rejects"], ["B-ORG", "O"]), (["Peter", "Blackburn"], ["B-PER", "I-PER"])]


def test_conll04_fixture_and_real_data():
    rows = build_task("conll04").read_file(fx("conll04_sample.txt"))
    assert len(rows) == 2 and rows[1].tags == ["B-Peop", "I-Peop", "O", "O", "B-Org", "I-Org"]
    train = build_task("conll04").read_file(CONLL04 / "train.txt")
    assert len(train) == 910
    assert {t for r in train for t in r.tags} == set(CONLL04_LABELS)
    assert len(build_task("conll04").read_file(CONLL04 / "dev.txt")) == 243


def test_ontonotes_conllx_token_column_2_tag_last():
    task = build_task("ontonotes")
    rows = task.read_file(fx("ontonotes_sample.sd.conllx"))
    assert rows[0].words == ["People", "in", "New York", "celebrated", "Christmas", "Day"]
    assert rows[0].tags == ["B-NORP", "O", "B-GPE", "O", "B-EVENT", "I-EVENT"]
    assert rows[1].tags == ["O", "O", "B-MONEY", "I-MONEY"]
    assert task.options()["num_columns"] == 11


def test_generic_tagging_fits_labels_and_rebuilds_from_options():
    task = build_task("tagging", token_column=0, tag_column=-1)
    splits = load_splits(task, train_file=fx("tagging_train.txt"),
                         validation_file=fx("tagging_train.txt"),
                         test_file=fx("tagging_test_notags.txt"))
    assert [r.words for r in splits["train"]] == [["The", "new", "LT-3", "laser"],
                                                  ["Ask", "Siri", "."], ["Bye"]]
    assert task.labels == ("O", "B-assistant", "B-device", "I-device")
    assert [r.tags for r in splits["test"]] == [None, None]
    again = build_task("tagging", **json.loads(json.dumps(task.options())))
    assert again.labels == task.labels
    assert again.read_file(fx("tagging_test_notags.txt"), require_labels=False)[1].words == \
        ["The", "laser"]


def test_generic_tagging_unknown_dev_tag_names_file_and_line():
    task = build_task("tagging")
    with pytest.raises(DataFormatError, match=r"tagging_dev_unknown_tag.txt:5: tag 'B-computer' "
                                              r"is not in the training label set \[O, "):
        load_splits(task, train_file=fx("tagging_train.txt"),
                    validation_file=fx("tagging_dev_unknown_tag.txt"))


def test_prediction_input_without_tag_column():
    rows = build_task("conll03").read_file(fx("conll03_test_notags.txt"), require_labels=False)
    assert [(r.words, r.tags) for r in rows] == [(["Peter", "Blackburn"], None), (["said"], None)]
    with pytest.raises(DataFormatError, match=r"conll03_test_notags.txt:3: expected 4 columns"):
        build_task("conll03").read_file(fx("conll03_test_notags.txt"))


def test_srl_prediction_input_without_tags(tmp_path):
    path = write(tmp_path, "test.txt", "1 John said he left\n0 Stop ! |||\n")
    rows = build_task("conll05").read_file(path, require_labels=False)
    assert rows == [TaggedSentence(["John", "said", "he", "left"], None, 1),
                    TaggedSentence(["Stop", "!"], None, 0)]


def test_srl_reader():
    task = build_task("conll05")
    rows = task.read_file(fx("conll05_train.txt"))
    assert len(rows) == 4 and rows[0].predicate == 2 and rows[-1].words == ["Stop", "!"]
    task.fit_labels(rows)
    assert task.labels == ("O", "B-A0", "B-A1", "B-AM-LOC", "B-V", "I-A0", "I-A1", "I-AM-LOC")
    assert build_task("conll05", **task.options()).labels == task.labels
    assert task.group_of(rows[1]) == task.group_of(rows[2]) != task.group_of(rows[0])


@pytest.mark.parametrize("task,name,message", [
    ("conll03", "conll03_bad_columns.txt", r":3: expected 4 columns \(token POS chunk NER\), "
                                           r"found 3"),
    ("conll03", "conll03_bad_tag.txt", r":2: tag 'B-FOO' is not one of the conll03 tags"),
    ("conll04", "conll04_bad_missing_tag.txt", r":2: expected 2 columns \(token TAG\), found 1"),
    ("conll04", "conll04_bad_utf8.txt", r":2: not valid UTF-8"),
    ("conll04", "empty.txt", r": no sentences"),
    ("ontonotes", "ontonotes_bad_empty_token.sd.conllx", r":2: empty token"),
    ("tagging", "empty.txt", r": no sentences"),
    ("conll05", "conll05_bad_count.txt", r":2: 3 tags for 4 words"),
    ("conll12", "empty.txt", r": no predicate instances"),
])
def test_malformed_fixture_lines_name_file_and_line(task, name, message):
    with pytest.raises(DataFormatError, match=name.replace(".", r"\.") + message):
        build_task(task).read_file(fx(name))


@pytest.mark.parametrize("line,message", [
    ("1 John said ||| B-A0 B-V\n", None),
    ("1 John said B-A0 B-V\n", r":1: missing '\|\|\|'"),
    ("x John said ||| B-A0 B-V\n", r":1: the predicate index 'x' is not an integer"),
    ("2 John said ||| B-A0 B-V\n", r":1: predicate index 2 is out of range for 2 words"),
    ("-1 John said ||| B-A0 B-V\n", r":1: predicate index -1 is out of range"),
    ("1 John said ||| B-A0\n", r":1: 1 tags for 2 words"),
    ("1 John said |||\n", r":1: no tags after"),
    ("1 ||| \n", r":1: no words"),
    ("1 a ||| b ||| c\n", r":1: expected one '\|\|\|'"),
])
def test_srl_malformed_lines(tmp_path, line, message):
    path = write(tmp_path, "srl.txt", "0 Stop ! ||| B-V O\n" + line)
    message = message and message.replace(":1:", ":2:")
    if message is None:
        assert len(build_task("conll05").read_file(path)) == 2
    else:
        with pytest.raises(DataFormatError, match=r"srl\.txt" + message):
            build_task("conll05").read_file(path)


def test_srl_unknown_dev_tag_after_fitting():
    task = build_task("conll12")
    load_splits(task, train_file=fx("conll05_train.txt"),
                validation_file=fx("conll05_train.txt"))
    with pytest.raises(DataFormatError, match=r"conll12_dev_unknown_tag.txt:1: tag 'B-AM-MNR' "
                                              r"is not in the training label set"):
        task.read_file(fx("conll12_dev_unknown_tag.txt"))


def test_skip_bad_rows_drops_the_whole_sentence(tmp_path, capsys):
    path = write(tmp_path, "t.txt", "EU B-Org\nsays\nhi O\n\nok O\n\nbad B-Nope\n")
    rows = build_task("conll04").read_file(path, skip_bad_rows=True)
    assert [r.words for r in rows] == [["ok"]]
    err = capsys.readouterr().err
    assert "skipped 2 malformed row(s)" in err and "t.txt:2:" in err
    srl = write(tmp_path, "s.txt", "0 Stop ! ||| B-V O\n5 Stop ! ||| B-V O\n")
    assert len(build_task("conll05").read_file(srl, skip_bad_rows=True)) == 1


def test_tab_separated_generic_file_keeps_spaces_in_tokens(tmp_path):
    path = write(tmp_path, "t.tsv", "New York\tNNP\tB-LOC\nis\tVBZ\tO\n")
    task = build_task("tagging", token_column=0, tag_column=2)
    assert task.read_file(path)[0].words == ["New York", "is"]
    bad = write(tmp_path, "b.tsv", "New York\tNNP\tB-LOC\nis\tVBZ\n")
    with pytest.raises(DataFormatError, match=r"b\.tsv:2: expected 3 columns like line 1"):
        task.read_file(bad)


# ---- features ------------------------------------------------------------------------------
def test_wordpiece_alignment_first_piece_only(bert):
    task = build_task("conll04")
    ex = TaggedSentence(["John", "unbelievably", "left", "Paris"], ["B-Peop", "O", "O", "B-Loc"])
    enc = task.encode([ex], bert, 64)
    f, m = enc.features[0], enc.meta[0]
    tok = bert.tokenizer
    pieces = tok(["unbelievably"], add_special_tokens=False)["input_ids"][0]
    assert len(pieces) > 1
    ids = f["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    start = 2  # [CLS] john
    assert ids[start:start + len(pieces)] == pieces
    index = {t: i for i, t in enumerate(task.labels)}
    expected = [-100, index["B-Peop"], index["O"]] + [-100] * (len(pieces) - 1) + \
        [index["O"], index["B-Loc"], -100]
    assert f["labels"] == expected and len(f["labels"]) == len(ids)
    assert m["word_ids"] == [None, 0] + [1] * len(pieces) + [2, 3, None]
    assert task.decode(one_hot_results(task, enc, bert), enc) == [ex.tags]


def test_bpe_alignment_uses_leading_space_and_first_piece(roberta):
    task = build_task("conll03")
    ex = TaggedSentence(["the", "xylophonist", "movie"], ["O", "B-PER", "O"])
    enc = task.encode([ex], roberta, 64)
    tok = roberta.tokenizer
    f = enc.features[0]
    pieces = tok([" xylophonist"], add_special_tokens=False)["input_ids"][0]
    assert len(pieces) > 1
    assert tok.convert_ids_to_tokens(pieces[0]).startswith("Ġ")
    the = tok([" the"], add_special_tokens=False)["input_ids"][0]
    assert f["input_ids"][:1 + len(the)] == [tok.bos_token_id] + the
    labels = f["labels"]
    first = 1 + len(the)
    assert labels[first] == task.labels.index("B-PER")
    assert labels[first + 1:first + len(pieces)] == [-100] * (len(pieces) - 1)
    assert sum(label != -100 for label in labels) == 3
    assert task.decode(one_hot_results(task, enc, roberta), enc) == [ex.tags]


def test_zero_piece_word_becomes_unk_and_long_word_keeps_first_pieces(bert):
    task = build_task("conll04")
    ex = TaggedSentence(["a", "\u200b", "b"], ["O", "B-Loc", "O"])
    f = task.encode([ex], bert, 16).features[0]
    assert f["input_ids"][2] == bert.tokenizer.unk_token_id and f["labels"][2] == 1
    long_word = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3
    enc = task.encode([TaggedSentence([long_word, "x"], ["B-Loc", "O"])], bert, 8)
    assert all(len(f["input_ids"]) <= 8 for f in enc.features)
    assert task.decode(one_hot_results(task, enc, bert), enc) == [["B-Loc", "O"]]


def test_plan_windows_and_assignment():
    assert plan_windows([1, 1, 1], 5) == [(0, 3)]
    # budget 4, stride >= 2 sub-tokens: starts 0, 2, 4
    assert plan_windows([1] * 7, 4) == [(0, 4), (2, 6), (4, 7)]
    assert plan_windows([3, 3, 3], 4) == [(0, 1), (1, 2), (2, 3)]
    owner = assign_words([(0, 4), (2, 6), (4, 7)], 7)
    assert owner == [0, 0, 0, 1, 1, 2, 2]


def test_long_sentence_windows_round_trip(bert, capsys):
    rng = random.Random(0)
    task = build_task("conll04")
    vocab = ["the", "unbelievably", "paris", "john", "went", "to", "acme", ",", "and"]
    words = [rng.choice(vocab) for _ in range(300)]
    tags = [rng.choice(CONLL04_LABELS) for _ in range(300)]
    short = TaggedSentence(["john", "left"], ["B-Peop", "O"])
    enc = task.encode([short, TaggedSentence(words, tags), short], bert, 32)
    assert "1 of 3 sentences do not fit in 32 tokens" in capsys.readouterr().err
    assert all(len(f["input_ids"]) <= 32 for f in enc.features)
    windows = [m for m in enc.meta if m["example"] == 1]
    assert len(windows) > 10
    assert all(a["first_word"] < b["first_word"] < a["end_word"]  # overlapping windows
               for a, b in zip(windows, windows[1:]))
    decided = sorted(w for m in windows for w, _ in m["decides"])
    assert decided == list(range(300))
    preds = task.decode(one_hot_results(task, enc, bert), enc)
    assert preds == [short.tags, tags, short.tags]


def test_srl_marks_the_predicate_after_the_separator(bert, roberta):
    task = build_task("conll05")
    task.fit_labels(task.read_file(fx("conll05_train.txt")))
    ex = TaggedSentence(["John", "said", "he", "left"], ["B-A0", "B-V", "B-A1", "I-A1"], 1)
    for backbone in (bert, roberta):
        tok = backbone.tokenizer
        enc = task.encode([ex], backbone, 64)
        f = enc.features[0]
        words = tok([" " + w for w in ex.words], add_special_tokens=False)["input_ids"]
        sentence = [t for p in words for t in p]
        verb = words[1]
        if backbone is bert:
            layout = [tok.cls_token_id] + sentence + [tok.sep_token_id] + verb + [tok.sep_token_id]
        else:
            layout = ([tok.bos_token_id] + sentence + [tok.eos_token_id] * 2 + verb
                      + [tok.eos_token_id])
        assert f["input_ids"] == layout
        n = len(sentence)
        labelled = [i for i, label in enumerate(f["labels"]) if label != -100]
        assert len(labelled) == 4 and all(1 <= i <= n for i in labelled)
        assert all(w is None for w in enc.meta[0]["word_ids"][n + 1:])
        assert task.decode(one_hot_results(task, enc, backbone), enc) == [ex.tags]


def test_srl_windows_keep_the_predicate_segment(bert):
    task = build_task("conll05", labels=["O", "B-A0", "B-V"])
    words = ["john"] * 60
    tags = ["O"] * 60
    tags[45] = "B-V"
    enc = task.encode([TaggedSentence(words, tags, 45)], bert, 16)
    john = bert.tokenizer(" john", add_special_tokens=False)["input_ids"]
    for f in enc.features:
        assert len(f["input_ids"]) <= 16
        assert f["input_ids"][-1 - len(john):-1] == john
    assert task.decode(one_hot_results(task, enc, bert), enc) == [tags]


def test_model_outputs_flow_through_loss_and_decode(bert):
    from ptv2_ds.heads.token import TokenHead

    task = build_task("conll04")
    rows = task.read_file(fx("conll04_sample.txt"))
    enc = task.encode(rows, bert, 32)
    batch = task.collate(enc.features, bert)
    torch.manual_seed(0)
    head = TokenHead(bert.hidden_size, task.num_outputs)
    with torch.no_grad():
        outputs = head(bert(batch), batch, bert)
    loss = task.loss(outputs, batch)
    mask = batch["labels"] != -100
    manual = torch.nn.functional.cross_entropy(outputs[mask].float(), batch["labels"][mask])
    assert torch.isfinite(loss) and torch.allclose(loss, manual)
    assert task.loss(outputs, {"labels": torch.full_like(batch["labels"], -100)}) == 0
    preds = task.decode(task.batch_results(outputs, batch), enc)
    assert [len(p) for p in preds] == [len(r.words) for r in rows]
    assert all(t in task.labels for p in preds for t in p)


def test_write_predictions(tmp_path):
    task = build_task("conll05")
    rows = task.read_file(fx("conll05_train.txt"))
    out = tmp_path / "pred.jsonl"
    task.write_predictions(out, [r.tags for r in rows], rows)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[1] == {"predicate": 1, "tokens": ["John", "said", "he", "left"],
                        "tags": ["B-A0", "B-V", "B-A1", "I-A1"]}
    assert len(lines) == 4 and list(tmp_path.iterdir()) == [out]
    ner = build_task("conll04")
    ner.write_predictions(out, [["O"]], [TaggedSentence(["Zürich"], None)])
    assert json.loads(out.read_text()) == {"tokens": ["Zürich"], "tags": ["O"]}


# ---- metrics -------------------------------------------------------------------------------
def test_ner_scores_hand_worked_and_equal_to_seqeval():
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "B-LOC", "O"]]
    # gold spans: PER, LOC, ORG, LOC(2) = 4; predicted: PER, ORG, LOC(1 word) = 3; correct: 2
    s = ner_scores(gold, pred)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert s["f1_PER"] == 1.0 and s["f1_ORG"] == 1.0 and s["f1_LOC"] == 0.0
    assert s["f1"] == pytest.approx(f1_score(gold, pred))
    assert s["precision"] == pytest.approx(precision_score(gold, pred))
    assert s["recall"] == pytest.approx(recall_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True)
    assert s["f1_LOC"] == pytest.approx(report["LOC"]["f1-score"])
    # conlleval mode: an I- tag after O opens a span
    assert span_scores([["O", "I-PER"]], [["O", "B-PER"]])["f1"] == 1.0


def test_srl_scores_both_variants_on_fixture():
    task = build_task("conll05")
    gold = task.read_file(fx("conll05_train.txt"))
    pred = [["B-A0", "I-A0", "B-V", "B-AM-LOC", "I-AM-LOC", "O", "O"],   # AM-LOC too short
            ["B-A0", "B-V", "B-A1", "I-A1"],                              # all right
            ["O", "O", "B-A0", "O"],                                      # V missed
            ["B-V", "B-A1"]]                                              # spurious A1
    # without V: gold A0 AM-LOC | A0 A1 | A0 | - = 5; predicted A0 AM-LOC A0 A1 A0 A1 = 6;
    # correct A0 A0 A1 A0 = 4
    s = task.score(pred, gold)
    p, r = 4 / 6, 4 / 5
    assert s["precision"] == pytest.approx(p) and s["recall"] == pytest.approx(r)
    assert s["f1"] == pytest.approx(2 * p * r / (p + r))
    # with V: gold + 4 V = 9; predicted + 3 V = 9; correct + 3 = 7
    assert s["precision_with_v"] == pytest.approx(7 / 9)
    assert s["f1_with_v"] == pytest.approx(7 / 9)
    assert s.keys() >= set(task.metrics)


def test_dropping_v_equals_excluding_v_spans():
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(1)
    tags = ["O", "B-V", "I-V", "B-A0", "I-A0", "B-A1", "I-A1", "B-C-V", "I-C-V"]
    for _ in range(500):
        seq = [rng.choice(tags) for _ in range(rng.randint(1, 8))]
        kept = [e for e in get_entities(seq) if e[0] != "V"]
        assert get_entities(drop_types([seq], {"V"})[0]) == kept


def test_score_needs_gold_and_matching_lengths():
    task = build_task("conll04")
    with pytest.raises(ValueError, match="without gold tags"):
        task.score([["O"]], [TaggedSentence(["a"], None)])
    with pytest.raises(ValueError, match="1 predicted tags for 2 words"):
        srl_scores([["O", "O"]], [["O"]])
