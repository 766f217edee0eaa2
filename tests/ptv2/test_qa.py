"""The extractive QA family (SQuAD 1.1 / 2.0): reader, context offsets, windows, features, loss,
post-processing, the official metrics and the predictions file."""
import json
import re

import numpy as np
import pytest
import torch

from ptv2_ds.metrics.squad import (exact_match, f1_score, find_best_thresh, normalize_answer,
                                   squad_v1_scores, squad_v2_scores)
from ptv2_ds.tasks import qa
from ptv2_ds.tasks.base import Encoded, build_task, carve_dev
from ptv2_ds.tasks.qa import (QAExample, QAPrediction, answer_tokens, context_tokens,
                              null_odds_path, plan_windows)
from ptv2_ds.tasks.readers import DataFormatError
from tests.conftest import SHARED_DATA

SQUAD2 = SHARED_DATA / "squad2"
DEV_A = SQUAD2 / "squad2-dev-half-A.json"


@pytest.fixture(scope="module")
def dev_a():
    return qa.squad_v2().read_file(DEV_A)


@pytest.fixture(scope="module")
def dev_a_encoded(bert, dev_a):
    task = qa.squad_v2(doc_stride=32)
    return task, task.encode(dev_a, bert, 128)


class GLMLayout:
    """A backbone stand-in with GLM's pair layout ``[CLS] a [SEP] b <eos>`` (the eos of GLM's
    WordPiece tokenizer is [PAD]) around a BERT tokenizer."""

    max_positions = 512

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode_text(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def num_special_tokens(self, pair):
        return 3 if pair else 2

    def segment_starts(self, len_a, pair):
        return 1, (1 + len_a + 1) if pair else None

    def encode(self, ids_a, ids_b, max_len):
        t = self.tokenizer
        ids = [t.cls_token_id] + ids_a + [t.sep_token_id] + ids_b + [t.pad_token_id]
        return {"input_ids": ids, "sep": len(ids)}


class SlowTokenizer:
    """A fast tokenizer presented as a slow one (no offset mapping), like GLM-Chinese's."""

    is_fast = False

    def __init__(self, fast):
        self.fast = fast

    def __call__(self, text, **kwargs):
        assert "return_offsets_mapping" not in kwargs
        return self.fast(text, **kwargs)

    def convert_ids_to_tokens(self, ids):
        return self.fast.convert_ids_to_tokens(ids)


def write_json(tmp_path, obj, name="data.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def squad_file(qas, context="Paris is the capital of France.", title="France"):
    return {"version": "v2.0", "data": [{"title": title, "paragraphs": [
        {"context": context, "qas": qas}]}]}


def q(qid, question="What is the capital?", answers=(("Paris", 0),), **extra):
    return {"id": qid, "question": question,
            "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def span_texts(context, offsets):
    return [context[a:b] for a, b in offsets]


# ---- registry ---------------------------------------------------------------------------------
def test_registered_tasks_and_options():
    for name in ("squad", "squad_v2"):
        task = build_task(name, head="linear", template=None, labels=None)  # unknown: ignored
        assert task.family == "qa" and task.main_metric == "f1" and task.metrics[1] == "exact"
        assert task.heads == {"linear": "span"} and task.head_kind("linear") == "span"
        assert task.default_max_seq_len == 384 and task.num_outputs == 2 and task.labels == ()
        assert task.hub == (name,) and task.hub_splits == {"train": "train", "dev": "validation"}
        assert task.options() == {"doc_stride": 128, "n_best": 20, "max_answer_len": 30,
                                  "null_threshold": 0.0}
        custom = build_task(name, doc_stride=64, n_best="5", max_answer_len=10,
                            null_threshold=-1.5)
        assert build_task(name, **custom.options()).options() == custom.options() == {
            "doc_stride": 64, "n_best": 5, "max_answer_len": 10, "null_threshold": -1.5}
        assert build_task(name, doc_stride=None).doc_stride == 128
    for bad in ({"doc_stride": -1}, {"n_best": 0}, {"max_answer_len": 2.5},
                {"null_threshold": float("nan")}, {"n_best": True}):
        with pytest.raises(ValueError):
            qa.squad_v2(**bad)


# ---- reader -----------------------------------------------------------------------------------
def test_reads_the_shared_squad2_file(dev_a):
    assert len(dev_a) == 2828 and len({ex.title for ex in dev_a}) == 8
    assert sum(ex.is_impossible for ex in dev_a) == 1529
    first = dev_a[0]
    assert first.title == "Normans" and first.question == "In what country is Normandy located?"
    assert first.answers[0] == {"text": "France", "answer_start": 159}
    assert first.context[159:165] == "France" and first.is_impossible is False
    assert all(ex.answers == [] for ex in dev_a if ex.is_impossible)
    # a carved dev split keeps whole articles on one side
    task = qa.squad_v2()
    dev, train = carve_dev(task, dev_a, 0.2, 42, str(DEV_A))
    assert {ex.title for ex in dev}.isdisjoint({ex.title for ex in train})
    assert len(dev) + len(train) == len(dev_a)


def test_squad11_refuses_unanswerable_questions_or_skips_them(capsys):
    with pytest.raises(DataFormatError, match=r"question \w+ is marked is_impossible.*squad_v2"):
        qa.squad().read_file(DEV_A)
    rows = qa.squad().read_file(DEV_A, skip_bad_rows=True)
    assert len(rows) == 2828 - 1529 and not any(ex.is_impossible for ex in rows)
    assert "skipped 1529 malformed" in capsys.readouterr().err
    # prediction input: unanswerable questions are fine, with unknown gold
    rows = qa.squad().read_file(DEV_A, require_labels=False)
    assert len(rows) == 2828 and sum(ex.is_impossible is None for ex in rows) == 1529


def test_reader_errors_name_the_file_and_question(tmp_path):
    v2 = qa.squad_v2()

    def error(obj, task=v2, **kw):
        path = write_json(tmp_path, obj)
        with pytest.raises(DataFormatError) as e:
            task.read_file(path, **kw)
        assert str(path) in str(e.value)
        return str(e.value)

    msg = error(squad_file([q("q7", answers=[("Paris", 3)])]))
    assert "question q7: answer_start 3 does not point at 'Paris'" in msg
    assert "(the context there reads 'is is')" in msg
    assert "answer_start 99 does not point" in error(squad_file([q("q7", answers=[("x", 99)])]))
    assert "question q1: missing 'question'" in error(squad_file([{"id": "q1", "answers": []}]))
    assert "data[0].paragraphs[0].qas[1]: missing 'id'" in error(
        squad_file([q("q0"), {"question": "Why?", "answers": []}]))
    assert "question q1: answers[0]: 'text' must be a string, found int" in error(
        squad_file([q("q1", answers=[(5, 0)])]))
    assert "question q1: answers[0]: missing 'answer_start'" in error(
        squad_file([{"id": "q1", "question": "Why?", "answers": [{"text": "Paris"}]}]))
    assert "question q1: empty question" in error(squad_file([q("q1", question="  ")]))
    assert "data[0].paragraphs[0]: empty context" in error(squad_file([q("q1")], context=" "))
    assert "data[0].paragraphs[0]: missing 'context'" in error(
        {"data": [{"title": "t", "paragraphs": [{"qas": [q("q1")]}]}]})
    assert "data[0]: missing 'paragraphs'" in error({"data": [{"title": "t"}]})
    assert "question q1: duplicate id" in error(squad_file([q("q1"), q("q1")]))
    assert "no answers and not marked is_impossible" in error(
        squad_file([q("q1", answers=(), is_impossible=False)]))
    assert "is marked is_impossible but has answers" in error(
        squad_file([q("q1", is_impossible=True)]))
    assert "'is_impossible' must be true or false" in error(
        squad_file([q("q1", answers=(), is_impossible="yes")]))
    assert "question q1: no answers; SQuAD 1.1" in error(squad_file([q("q1", answers=())]),
                                                        task=qa.squad())
    # bad JSON: the line number; an empty file; no questions; not SQuAD at all
    broken = '{"data": [\n  {"title": "t",\n   "paragraphs": [,]}\n]}'
    assert re.search(r"data\.json:3: not valid JSON", error(broken))
    assert "the file is empty" in error("  \n")
    assert "no questions" in error({"data": []})
    assert 'an object with a "data" list' in error([1, 2])
    with pytest.raises(FileNotFoundError, match="data file not found"):
        v2.read_file(tmp_path / "missing.json")


def test_reader_skips_and_counts_bad_questions(tmp_path, capsys):
    path = write_json(tmp_path, squad_file(
        [q("q1"), q("q2", answers=[("Paris", 1)]), q("q3", answers=(), is_impossible=True)]))
    rows = qa.squad_v2().read_file(path, skip_bad_rows=True)
    assert [ex.id for ex in rows] == ["q1", "q3"] and rows[1].is_impossible is True
    err = capsys.readouterr().err
    assert "skipped 1 malformed" in err and "question q2" in err
    # no is_impossible key (Hugging Face's layout): an empty answer list means unanswerable
    path = write_json(tmp_path, squad_file([q("q1", answers=()), q("q2")]))
    rows = qa.squad_v2().read_file(path)
    assert [ex.is_impossible for ex in rows] == [True, False]
    # prediction input may leave the answers out; such questions cannot be scored
    path = write_json(tmp_path, squad_file([{"id": 5, "question": "Where?"}]))
    (row,) = qa.squad().read_file(path, require_labels=False)
    assert row.id == "5" and row.answers == [] and row.is_impossible is None
    with pytest.raises(ValueError, match="without gold answers"):
        qa.squad().score(["Paris"], [row])


# ---- context tokens and offsets -----------------------------------------------------------------
TRICKY = "Zürich's  naïve\tcafé (Straße) — 東京都, x=1.5%;\n\n  end.\u00a0Ünïcödé!"


def test_bert_offsets_give_the_original_substrings(bert):
    ids, offsets = context_tokens(bert.tokenizer, TRICKY)
    tokens = bert.tokenizer.convert_ids_to_tokens(ids)
    texts = span_texts(TRICKY, offsets)
    assert len(ids) == len(texts)
    # lowercased / accent-stripped tokens, original characters
    assert tokens[:4] == ["zurich", "'", "s", "naive"] and texts[:4] == ["Zürich", "'", "s",
                                                                         "naïve"]
    assert texts[4:9] == ["café", "(", "St", "raße", ")"]   # "st", "##raße"
    assert texts[texts.index("東"):texts.index("東") + 4] == ["東", "京", "都", ","]
    assert tokens[-2:] == ["unicode", "!"] and texts[-2:] == ["Ünïcödé", "!"]
    assert all(t and t == t.strip() for t in texts)
    # every non-space character belongs to a token, in order
    assert "".join(texts) == "".join(TRICKY.split())
    assert (np.diff(offsets[:, 0]) >= 0).all()


def test_bpe_offsets_drop_the_leading_space(roberta):
    context = "the movie  was great, fun!  Zürich"
    ids, offsets = context_tokens(roberta.tokenizer, context)
    texts = span_texts(context, offsets)
    assert [t for t in texts if t][:5] == ["the", "movie", "was", "great", ","]
    assert texts[2] == ""   # the extra space of "  " is a token with no characters
    assert all(t == t.strip() for t in texts)
    # byte-level pieces of one character share its span; no character is lost
    covered = sorted({i for a, b in offsets for i in range(a, b)})
    assert "".join(context[i] for i in covered) == "".join(context.split())


def test_glm_gpt2_offsets_strip_spaces_and_drop_space_tokens():
    from glm.tokenization import load_glm_tokenizer

    tok = load_glm_tokenizer("gpt2")
    context = "The  Zürich naïve 東京 test."
    ids, offsets = context_tokens(tok, context)
    texts = span_texts(context, offsets)
    assert len(texts) == len(ids)
    assert texts[0] == "The" and "Zürich" in "".join(texts) and texts[-2:] == ["test", "."]
    assert "" in texts   # the extra space of "  " is a token with no characters
    assert (offsets[:, 1] >= offsets[:, 0]).all()


def test_slow_tokenizers_tokenize_word_by_word(bert):
    slow = SlowTokenizer(bert.tokenizer)
    context = "Hello  world, Zürich 東京 unaffable"
    ids, offsets = context_tokens(slow, context)
    assert ids == context_tokens(bert.tokenizer, context)[0]
    texts = span_texts(context, offsets)
    pieces = bert.tokenizer.convert_ids_to_tokens(ids)
    assert texts[:3] == ["Hello", "world", ","]   # pieces that spell the word: exact
    assert texts[3] == "Zürich"                    # "zurich" does not spell it: the word
    assert texts[4:6] == ["東", "京"]
    assert "".join(p.lstrip("#") for p in pieces[6:]) == "unaffable"
    assert "".join(texts[6:]) == "unaffable" or set(texts[6:]) == {"unaffable"}
    # SentencePiece-style pieces, including a bare "▁"
    assert qa._piece_spans("北京大学", ["▁", "北京", "大学"]) == [(0, 0), (0, 2), (2, 4)]
    assert qa._piece_spans("Ab", ["▁a", "x"]) is None


# ---- windows ----------------------------------------------------------------------------------
def test_window_semantics():
    assert plan_windows(3, 4, 2) == [(0, 3)]
    assert plan_windows(0, 4, 2) == [(0, 0)]
    assert plan_windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]   # 2 tokens shared
    assert plan_windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert plan_windows(10, 4, 0) == [(0, 4), (4, 8), (8, 10)]
    assert plan_windows(10, 4, 3) == plan_windows(10, 4, 2)   # overlap at most budget // 2
    assert plan_windows(5, 1, 9) == [(i, i + 1) for i in range(5)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, budget = int(rng.integers(0, 300)), int(rng.integers(1, 60))
        stride = int(rng.integers(0, 80))
        windows = plan_windows(n, budget, stride)
        assert windows[0][0] == 0 and windows[-1][1] == n
        assert all(0 < b - a <= budget for a, b in windows) or n == 0
        overlap = min(stride, budget // 2)
        for (a1, b1), (a2, b2) in zip(windows, windows[1:]):
            assert b1 - a1 == budget and a2 - a1 == budget - overlap and b1 - a2 == overlap


def test_windows_keep_the_answers_of_the_shared_file(bert, dev_a, dev_a_encoded):
    task, enc = dev_a_encoded
    assert len(enc.features) > len(dev_a)   # contexts longer than 128 tokens were windowed
    found: dict[int, list[str]] = {}
    for f, m in zip(enc.features, enc.meta):
        assert len(f["input_ids"]) <= 128
        offsets = m["offsets"]
        cs = m["context_start"]
        assert f["input_ids"][:1] == [bert.tokenizer.cls_token_id]
        assert f["input_ids"][cs - 1] == bert.tokenizer.sep_token_id
        assert len(f["input_ids"]) == cs + len(offsets) + 1
        s, e = f["start_positions"], f["end_positions"]
        if s:
            ex = dev_a[m["example"]]
            assert cs <= s <= e < cs + len(offsets)
            found.setdefault(m["example"], []).append(
                ex.context[offsets[s - cs][0]:offsets[e - cs][1]])
        else:
            assert e == 0
    tokenizer = bert.tokenizer
    exact = 0
    for i, ex in enumerate(dev_a):
        if ex.is_impossible:
            assert i not in found
            continue
        gold = ex.answers[0]["text"]
        ids, offsets = context_tokens(tokenizer, ex.context)
        first, last = answer_tokens(ex, offsets)
        if last - first + 1 > task.doc_stride + 1 and i not in found:
            continue   # longer than the overlap and cut by every window boundary
        assert i in found, ex.id
        span = found[i][0]
        assert gold in span, (ex.id, gold, span)   # a token may hold more than the answer
        exact += span == gold
    answerable = sum(not ex.is_impossible for ex in dev_a)
    assert len(found) >= answerable - 1 and exact >= 0.99 * len(found)


def test_roberta_and_glm_layouts_put_the_answer_at_the_same_words(roberta, bert):
    context = ("the movie was great fun and the actors were good but the plot was bad " * 6
               + "yes the story of love is not boring .")
    start = context.index("story of love")
    ex = QAExample("r1", "t", context, "what is it ?", [{"text": "story of love",
                                                          "answer_start": start}], False)
    for backbone in (roberta, GLMLayout(bert.tokenizer)):
        task = qa.squad(doc_stride=8)
        enc = task.encode([ex], backbone, 40)
        assert len(enc.features) > 1
        q_len = len(backbone.encode_text("what is it ?"))
        hits = 0
        for f, m in zip(enc.features, enc.meta):
            assert m["context_start"] == backbone.segment_starts(q_len, True)[1]
            assert len(f["input_ids"]) <= 40
            if f["start_positions"]:
                hits += 1
                cs, offsets = m["context_start"], m["offsets"]
                text = context[offsets[f["start_positions"] - cs][0]:
                               offsets[f["end_positions"] - cs][1]]
                assert text == "story of love"
        assert hits >= 1
        # decoding one-hot logits gives the answer back
        results = []
        for f in enc.features:
            s, e = np.zeros(len(f["input_ids"]), np.float32), np.zeros(len(f["input_ids"]),
                                                                       np.float32)
            s[f["start_positions"]] = e[f["end_positions"]] = 10
            results.append((s, e))
        assert task.decode(results, enc)[0].text == "story of love"


def test_a_question_too_long_is_refused_with_its_id(bert):
    ex = QAExample("long-q", "t", "a short context", "why " * 200, [], None)
    with pytest.raises(DataFormatError,
                       match=r"question long-q is 200 tokens; --max-seq-len 128 leaves no room "
                             r"for the context"):
        qa.squad_v2().encode([ex], bert, 128)
    # exactly one context token of room is enough
    ex.question = "why " * 124
    enc = qa.squad_v2().encode([ex], bert, 128)
    assert len(enc.features) == 3 and all(len(m["offsets"]) == 1 for m in enc.meta)


# ---- loss and batch results ---------------------------------------------------------------------
def test_loss_is_the_mean_of_start_and_end_cross_entropy():
    task = qa.squad_v2()
    torch.manual_seed(0)
    outputs = torch.randn(2, 5, 2)
    batch = {"start_positions": torch.tensor([1, 9]), "end_positions": torch.tensor([3, 2]),
             "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    logp = outputs.log_softmax(1)
    start = -logp[0, 1, 0]                                  # row 1 (position 9) is ignored
    end = -(logp[0, 3, 1] + logp[1, 2, 1]) / 2
    assert torch.allclose(task.loss(outputs, batch), (start + end) / 2)
    # fp32 whatever the outputs' dtype; padding does not change a row's loss
    assert task.loss(outputs.half(), batch).dtype == torch.float32
    padded = torch.cat([outputs, torch.randn(2, 3, 2) * 50], 1)
    batch_padded = {**batch, "attention_mask": torch.tensor([[1] * 5 + [0] * 3] * 2)}
    batch_padded["start_positions"] = torch.tensor([1, 99])
    assert torch.allclose(task.loss(padded, batch_padded), task.loss(outputs, batch))
    # every position out of range: zero loss, no NaN
    none = {**batch, "start_positions": torch.tensor([7, 8]), "end_positions": torch.tensor(
        [7, 8])}
    assert task.loss(outputs, none).item() == 0.0


def test_batch_results_trim_to_real_tokens():
    task = qa.squad()
    outputs = torch.arange(2 * 4 * 2, dtype=torch.bfloat16).reshape(2, 4, 2)
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}
    (s0, e0), (s1, e1) = task.batch_results(outputs, batch)
    assert s0.dtype == np.float32 and s0.tolist() == [0, 2, 4, 6] and e0.tolist() == [1, 3, 5, 7]
    assert s1.tolist() == [8, 10] and e1.tolist() == [9, 11]


def test_span_head_forward_and_backward_on_real_features(bert, dev_a_encoded):
    from ptv2_ds.heads.token import SpanHead

    task, enc = dev_a_encoded
    rows = [f for f in enc.features if f["start_positions"]][:3] + enc.features[:1]
    batch = task.collate(rows, bert)
    assert batch["start_positions"].shape == (4,) and batch["input_ids"].shape[0] == 4
    head = SpanHead(bert.hidden_size)
    outputs = head(bert(batch), batch, bert)
    assert outputs.shape == (*batch["input_ids"].shape, 2)
    loss = task.loss(outputs, batch)
    loss.backward()
    assert torch.isfinite(loss) and head.qa_outputs.weight.grad is not None
    assert len(task.batch_results(outputs, batch)) == 4


# ---- post-processing ----------------------------------------------------------------------------
WORDS = [f"w{i}" for i in range(8)]
CONTEXT = " ".join(WORDS)
CS = 4   # [CLS] q q [SEP] context ... [SEP]


def hand_encoded(windows):
    """One question over CONTEXT, windows of word ranges; logits all -5 (call ``put``)."""
    offsets = np.array([(m.start(), m.end()) for m in re.finditer(r"\S+", CONTEXT)], np.int32)
    ex = QAExample("q", "t", CONTEXT, "q q", [], False)
    meta = [{"example": 0, "context_start": CS, "offsets": offsets[a:b]} for a, b in windows]
    results = [(np.full(CS + b - a + 1, -5, np.float32), np.full(CS + b - a + 1, -5, np.float32))
               for a, b in windows]
    return Encoded([ex], [{} for _ in windows], meta), results, windows


def put(results, windows, k, which, word, value):
    """Set window k's start (which=0) or end (1) logit of context word ``word``."""
    results[k][which][CS + word - windows[k][0]] = value


def test_decode_picks_the_best_valid_span():
    enc, results, w = hand_encoded([(0, 8)])
    put(results, w, 0, 0, 2, 3.0)
    put(results, w, 0, 1, 4, 3.0)
    pred = qa.squad().decode(results, enc)[0]
    assert pred.text == "w2 w3 w4" and pred.score == 6.0 and pred.char_span == (6, 14)
    assert pred.nbest[0] == {"text": "w2 w3 w4", "score": 6.0, "start": 6}
    assert len(pred.nbest) <= 20 and [n["score"] for n in pred.nbest] == sorted(
        [n["score"] for n in pred.nbest], reverse=True)
    # question tokens and [CLS] never start or end an answer
    for position in (0, 1, 2, 3):
        results[0][0][position] = results[0][1][position] = 100.0
    assert qa.squad().decode(results, enc)[0].text == "w2 w3 w4"


def test_decode_respects_max_answer_len_and_order():
    enc, results, w = hand_encoded([(0, 8)])
    put(results, w, 0, 0, 1, 5.0)
    put(results, w, 0, 0, 4, 2.0)
    put(results, w, 0, 1, 5, 5.0)
    put(results, w, 0, 1, 4, 1.0)
    assert qa.squad().decode(results, enc)[0].text == "w1 w2 w3 w4 w5"          # 10
    assert qa.squad(max_answer_len=2).decode(results, enc)[0].text == "w4 w5"    # 7
    assert qa.squad(max_answer_len=1).decode(results, enc)[0].text == "w4"       # 3
    # the best end lies before the best start: never a reversed span
    enc, results, w = hand_encoded([(0, 8)])
    put(results, w, 0, 0, 5, 5.0)
    put(results, w, 0, 0, 1, 1.0)
    put(results, w, 0, 1, 2, 5.0)
    pred = qa.squad().decode(results, enc)[0]
    assert pred.text == "w1 w2" and pred.score == 6.0


def test_decode_merges_windows():
    enc, results, w = hand_encoded([(0, 5), (3, 8)])
    put(results, w, 0, 0, 1, 2.0)
    put(results, w, 0, 1, 1, 2.0)    # "w1": 4 in the first window
    put(results, w, 1, 0, 6, 3.0)
    put(results, w, 1, 1, 7, 3.0)    # "w6 w7": 6 in the second
    pred = qa.squad().decode(results, enc)[0]
    assert pred.text == "w6 w7" and pred.score == 6.0
    assert [n["text"] for n in pred.nbest[:2]] == ["w6 w7", "w1"]
    put(results, w, 0, 0, 1, 5.0)    # now the first window's span is better: 7
    assert qa.squad().decode(results, enc)[0].text == "w1"
    # one span seen by both windows appears once in the n-best list
    enc, results, w = hand_encoded([(0, 5), (3, 8)])
    for k in (0, 1):
        put(results, w, k, 0, 3, 1.0)
        put(results, w, k, 1, 4, 1.0)
    pred = qa.squad().decode(results, enc)[0]
    assert pred.text == "w3 w4" and [n["text"] for n in pred.nbest].count("w3 w4") == 1


def test_decode_null_threshold_on_both_sides():
    enc, results, w = hand_encoded([(0, 5), (3, 8)])
    results[0][0][0] = results[0][1][0] = 1.0    # [CLS] of window 0: null 2.0
    results[1][0][0] = results[1][1][0] = 3.0    # window 1: 6.0; the null is the minimum
    put(results, w, 1, 0, 6, 0.75)
    put(results, w, 1, 1, 7, 0.75)               # best span 1.5: null - best = 0.5
    for threshold, text in ((0.0, ""), (0.25, ""), (0.5, "w6 w7"), (1.0, "w6 w7")):
        pred = qa.squad_v2(null_threshold=threshold).decode(results, enc)[0]
        assert pred.null_score_diff == 0.5 and pred.text == text, threshold
        assert pred.span_text == "w6 w7"
    assert qa.squad(null_threshold=0.0).decode(results, enc)[0].text == "w6 w7"   # 1.1: never ""
    # negative threshold: even a span better than the null is dropped
    results[1][0][CS + 3] = 10.0
    pred = qa.squad_v2(null_threshold=-100).decode(results, enc)[0]
    assert pred.text == "" and pred.null_score_diff < 0


def test_decode_random_logits_on_the_shared_file(dev_a, dev_a_encoded):
    task, enc = dev_a_encoded
    rng = np.random.default_rng(0)
    results = [(rng.standard_normal(len(f["input_ids"])).astype(np.float32),
                rng.standard_normal(len(f["input_ids"])).astype(np.float32))
               for f in enc.features]
    preds = task.decode(results, enc)   # no assertion on time: it must simply finish
    assert len(preds) == len(dev_a)
    for p, ex in zip(preds, dev_a):
        a, b = p.char_span
        assert p.span_text == ex.context[a:b] and p.text in ("", p.span_text)
    scores = task.score(preds, dev_a)
    assert scores["total"] == 2828 and 0 <= scores["f1"] <= 100


def test_one_hot_logits_round_trip_through_batches(bert, dev_a, dev_a_encoded):
    """Gold positions as logits, through collate and batch_results: the answers come back."""
    task, enc = dev_a_encoded
    results = []
    for i in range(0, len(enc.features), 512):
        batch = task.collate(enc.features[i:i + 512], bert)
        outputs = torch.zeros(*batch["input_ids"].shape, 2)
        rows = torch.arange(len(outputs))
        outputs[rows, batch["start_positions"], 0] = 10
        outputs[rows, batch["end_positions"], 1] = 10
        results += task.batch_results(outputs, batch)
    scores = task.score(task.decode(results, enc), dev_a)
    assert scores["NoAns_exact"] == 100.0
    assert scores["HasAns_f1"] > 99 and scores["exact"] > 99
    assert list(scores)[:2] == ["f1", "exact"]


# ---- metrics ----------------------------------------------------------------------------------
def test_normalization_and_official_cases():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theater, another ANT") == "theater another ant"   # whole words
    assert normalize_answer("U.S.-based") == "usbased"
    assert exact_match("the Eiffel Tower", "Eiffel Tower!") == 1
    assert exact_match("Eiffel", "Eiffel Tower") == 0
    # pred tokens cat sat on mat, gold cat on mat: P = 3/4, R = 1
    assert f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    assert f1_score("cat cat", "cat") == pytest.approx(2 / 3)   # a multiset overlap
    assert f1_score("", "") == 1.0 and f1_score("", "x") == 0.0 and f1_score("x", "") == 0.0
    assert f1_score("the", "a", empty_match=False) == 0.0   # SQuAD 1.1: an empty side is 0
    # the maximum over gold answers
    v1 = squad_v1_scores([["Denver Broncos", "Carolina Panthers"], ["1990", "in 1990"]],
                         ["broncos", "1990s"])
    assert v1 == {"f1": pytest.approx(100 * (2 / 3 + 0) / 2), "exact": 0.0, "total": 2}
    assert squad_v1_scores([["the"]], ["the"]) == {"f1": 0.0, "exact": 100.0, "total": 1}


def test_squad_v2_scores_split_answerable_and_unanswerable():
    golds = [["France", "in France"], [], [], ["the"]]
    preds = ["France", "", "Paris", ""]
    out = squad_v2_scores(golds, preds)
    # q4's only gold normalizes to nothing: it becomes "" (an empty prediction matches)
    assert out == {"f1": 75.0, "exact": 75.0, "total": 4,
                   "HasAns_f1": 100.0, "HasAns_exact": 100.0, "HasAns_total": 2,
                   "NoAns_f1": 50.0, "NoAns_exact": 50.0, "NoAns_total": 2}
    only = squad_v2_scores([["a cat"]], ["cat"])
    assert "NoAns_total" not in only and only["HasAns_total"] == 1


def test_best_threshold_search_hand_worked():
    # q1 answerable, span right, odds -2; q2 unanswerable, span "x", 1;
    # q3 answerable, span wrong, 3;   q4 unanswerable, span "y", -1.
    # no answer anywhere: 2/4. Switching in odds order: q1 +1 -> 3 (best, threshold -2),
    # q4 -1 -> 2, q2 -1 -> 1, q3 +0 -> 1.
    golds = [["Paris"], [], ["Rome"], []]
    spans = ["Paris", "x", "Milan", "y"]
    odds = [-2.0, 1.0, 3.0, -1.0]
    assert find_best_thresh(spans, [1, 0, 0, 0], odds, [True, False, True, False]) == (75.0,
                                                                                      -2.0)
    preds = [QAPrediction(t if d <= 0 else "", 0.0, d, t, (0, len(t))) for t, d in
             zip(spans, odds)]
    examples = [QAExample(f"q{i}", "t", "ctx", "?", [{"text": g[0], "answer_start": 0}]
                          if g else [], not g) for i, g in enumerate(golds)]
    out = qa.squad_v2().score(preds, examples)
    assert out["exact"] == 50.0   # q1 right, q2 right (""), q3 "" wrong, q4 "y" wrong
    assert out["best_exact"] == 75.0 and out["best_exact_thresh"] == -2.0
    assert out["best_f1"] == 75.0 and out["best_f1_thresh"] == -2.0
    # answering nothing is best: threshold stays 0.0
    assert find_best_thresh(["x"], [0], [5.0], [False]) == (100.0, 0.0)


# ---- predictions file -------------------------------------------------------------------------
def test_write_predictions(tmp_path):
    examples = [QAExample("b", "t", "c", "?"), QAExample("a", "t", "c", "?"),
                QAExample("ü", "t", "c", "?")]
    preds = [QAPrediction("Zürich", 2.0, -1.0, "Zürich"), QAPrediction("", 0.5, 3.0, "x"),
             QAPrediction("c", 1.0, 0.0, "c")]
    path = tmp_path / "test_predictions.json"
    qa.squad_v2().write_predictions(path, preds, examples)
    text = path.read_text(encoding="utf-8")
    assert list(json.loads(text).items()) == [("b", "Zürich"), ("a", ""), ("ü", "c")]
    assert "Zürich" in text   # not escaped
    odds = json.loads(null_odds_path(path).read_text())
    assert null_odds_path(path).name == "test_predictions.null_odds.json"
    assert odds == {"b": -1.0, "a": 3.0, "ü": 0.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_predictions.json",
                                                          "test_predictions.null_odds.json"]
    other = tmp_path / "v1.json"
    qa.squad().write_predictions(other, preds, examples)
    assert not null_odds_path(other).exists()
    assert qa.squad().prediction_file.endswith(".json")
    with pytest.raises(ValueError, match="2 predictions for 3"):
        qa.squad().write_predictions(other, preds[:2], examples)
