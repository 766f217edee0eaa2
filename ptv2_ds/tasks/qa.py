"""Extractive question answering: SQuAD 1.1 (``squad``) and SQuAD 2.0 (``squad_v2``).

Data. The official SQuAD JSON: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}`` (``is_impossible``
is SQuAD 2.0's; without it a 2.0 question is unanswerable when its answer list is empty). Each
question becomes a ``QAExample``. Every answer's ``answer_start`` must point at its ``text`` in
the context; SQuAD 1.1 training and evaluation files need an answer for every question, SQuAD
2.0 ones an answer unless the question ``is_impossible``. Prediction input
(``require_labels=False``) may leave the answers out. Errors name the file and the question id
(or, before the id is known, the JSON path such as ``data[0].paragraphs[3].qas[2]``); with
``skip_bad_rows`` a bad question (or paragraph) is skipped and counted instead.

Features. The question is segment a and the context segment b: ``[CLS] q [SEP] c [SEP]``
(BERT), ``<s> q </s></s> c </s>`` (RoBERTa), ``[CLS] q [SEP] c <eos>`` (GLM); only the
backbone's ``encode``/``segment_starts``/``num_special_tokens`` are used. The context is
tokenized once, with the character span of every token (``context_tokens``): the fast
tokenizer's offset mapping, or for a slow tokenizer (GLM-Chinese) one word (run of
non-whitespace) at a time, each token getting its exact characters when its pieces spell the
word, else the whole word. Whitespace at either end of a span is dropped (byte-level BPE puts
the leading space into the token); a token left with no characters can neither start nor end
an answer.

Windows (``plan_windows``). A context longer than ``budget = max_len - special tokens -
question tokens`` is cut into windows of at most ``budget`` tokens; window k starts at
``k * (budget - overlap)`` with ``overlap = min(doc_stride, budget // 2)``, so consecutive
windows share ``overlap`` tokens (``doc_stride`` counts shared tokens, as the Hugging Face
tokenizers' ``stride`` does) and the last window ends at the context's end. A question that
leaves no room for a single context token is refused. A training window's
``start_positions``/``end_positions`` are the sequence positions of the answer's first and
last token when the whole answer lies inside the window, else 0 (the [CLS] position: "no
answer here"), as are those of unanswerable questions.

Decoding. Per window, the ``n_best`` best start and end logits among its context tokens form
an ``n_best x n_best`` grid of candidate spans (numpy broadcasting), kept when the end is not
before the start and the span is at most ``max_answer_len`` tokens; a span scores start + end
logit and the best over all the question's windows wins, mapped back to the exact context
substring. SQuAD 2.0: the null score is the smallest [CLS] start + end logit over the windows,
and the answer is "" when ``null score - best span score > null_threshold``.

Scores: the official SQuAD 1.1 / 2.0 definitions (``ptv2_ds.metrics.squad``), in percent.
Predictions file: ``{question id: answer text}``, the JSON the official evaluation scripts
read; for SQuAD 2.0 also ``<stem>.null_odds.json``, ``{question id: null_score_diff}`` (their
``--na-prob-file``; note the scripts' default ``--na-prob-thresh 1.0`` then applies to it).
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..metrics.squad import squad_v1_scores, squad_v2_scores
from .base import (BadRows, Encoded, RecordError, Task, load_hub_split, record_text,
                   register, short_repr, write_atomic)
from .readers import DataFormatError

SQUAD_LAYOUT = ('{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", '
                '"answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}')


@dataclass
class QAExample:
    """One question on one context. ``answers``: ``{"text", "answer_start"}`` dicts (character
    offset into ``context``). ``is_impossible``: SQuAD 2.0's "no answer"; None when unknown
    (prediction input without answers), so the example cannot be scored."""

    id: str
    title: str
    context: str
    question: str
    answers: list[dict] = field(default_factory=list)
    is_impossible: bool | None = False


@dataclass
class QAPrediction:
    """The decoded answer of one question.

    ``text``: the answer ("" = no answer). ``score``: the best span's start + end logit
    (-inf when no span fits). ``null_score_diff``: null score - best span score (SQuAD 2.0's
    "no answer" odds; +inf when no span fits). ``span_text``/``char_span``: the best span and
    its ``[start, end)`` characters in the context, even when ``text`` is "" (None: no span).
    ``nbest``: up to ``n_best`` distinct spans ``{"text", "score", "start"}``, best first."""

    text: str
    score: float
    null_score_diff: float
    span_text: str = ""
    char_span: tuple[int, int] | None = None
    nbest: list[dict] = field(default_factory=list)


# ---- context tokens and windows -----------------------------------------------------------------
def context_tokens(tokenizer, context: str) -> tuple[list[int], np.ndarray]:
    """Token ids of ``context`` (no special tokens) and their character spans, an int32
    array [n, 2] of ``[start, end)`` with surrounding whitespace removed (empty: no
    characters)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)
        ids, spans = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    else:
        ids, spans = _word_by_word(tokenizer, context)
    trimmed = []
    for start, end in spans:
        while start < end and context[start].isspace():
            start += 1
        while end > start and context[end - 1].isspace():
            end -= 1
        trimmed.append((start, end) if start < end else (start, start))
    return ids, np.array(trimmed, dtype=np.int32).reshape(-1, 2)


def _word_by_word(tokenizer, context: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Slow tokenizers (no offset mapping): tokenize each whitespace-separated word."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", context)]
    if not words:
        return [], []
    pieces = tokenizer([context[s:e] for s, e in words], add_special_tokens=False,
                       verbose=False)["input_ids"]
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for (start, end), word_ids in zip(words, pieces):
        within = _piece_spans(context[start:end], tokenizer.convert_ids_to_tokens(word_ids))
        ids += word_ids
        spans += ([(start + s, start + e) for s, e in within] if within is not None
                  else [(start, end)] * len(word_ids))
    return ids, spans


def _piece_spans(word: str, pieces: list[str]) -> list[tuple[int, int]] | None:
    """Each piece's characters in ``word`` when the pieces (without the SentencePiece "▁",
    byte-level "Ġ" and WordPiece "##" markers) spell it in order, ignoring case; else None."""
    text = word.lower() if len(word.lower()) == len(word) else word
    spans, cursor = [], 0
    for piece in pieces:
        piece = piece.lstrip("▁Ġ")
        if piece.startswith("##"):
            piece = piece[2:]
        if text is not word:
            piece = piece.lower()
        if not text.startswith(piece, cursor):
            return None
        spans.append((cursor, cursor + len(piece)))
        cursor += len(piece)
    return spans if cursor == len(word) else None


def plan_windows(num_tokens: int, budget: int, doc_stride: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of the windows over ``num_tokens`` context tokens (see the
    module docstring): at most ``budget`` long, consecutive ones sharing
    ``min(doc_stride, budget // 2)`` tokens, together covering every token."""
    if budget < 1:
        raise ValueError("a window needs room for at least one context token")
    if num_tokens <= budget:
        return [(0, num_tokens)]
    step = budget - min(doc_stride, budget // 2)
    windows, start = [], 0
    while True:
        end = min(start + budget, num_tokens)
        windows.append((start, end))
        if end >= num_tokens:
            return windows
        start += step


def answer_tokens(example: QAExample, offsets: np.ndarray) -> tuple[int, int] | None:
    """Context-token indices of the first and last token of the example's (first) answer,
    or None (no answer, or no token covers it)."""
    if example.is_impossible or not example.answers:
        return None
    answer = example.answers[0]
    first_char = answer["answer_start"]
    end_char = first_char + len(answer["text"])
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = starts < ends
    after = np.nonzero(real & (ends > first_char))[0]
    before = np.nonzero(real & (starts < end_char))[0]
    if not len(after) or not len(before) or after[0] > before[-1]:
        return None
    return int(after[0]), int(before[-1])


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries (any order)."""
    if k >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


def _text(prediction) -> str:
    return prediction if isinstance(prediction, str) else prediction.text


# ---- the family ---------------------------------------------------------------------------------
class QATask(Task):
    """SQuAD-style extractive QA. ``version2``: questions may be unanswerable (SQuAD 2.0).

    Options: ``doc_stride`` (context tokens shared by consecutive windows), ``n_best`` (start
    and end candidates per window, and entries kept in ``QAPrediction.nbest``),
    ``max_answer_len`` (longest answer in tokens), ``null_threshold`` (SQuAD 2.0: answer ""
    when null score - best span score exceeds it)."""

    family = "qa"
    labels: tuple[str, ...] = ()
    heads = {"linear": "span"}   # Linear(H, 2) on every token: start and end logits
    hub_splits = {"train": "train", "dev": "validation"}
    file_format = "SQuAD JSON"
    default_max_seq_len = 384
    prediction_file = "predictions.json"

    def __init__(self, name: str, version2: bool, doc_stride=128, n_best=20,
                 max_answer_len=30, null_threshold=0.0):
        self.name = name
        self.version2 = version2
        self.hub = (name,)
        self.metrics = ("f1", "exact") + (("HasAns_f1", "HasAns_exact", "NoAns_f1",
                                           "NoAns_exact", "best_f1", "best_exact")
                                          if version2 else ())
        self.doc_stride = _int_option("doc_stride", doc_stride, 128, minimum=0)
        self.n_best = _int_option("n_best", n_best, 20, minimum=1)
        self.max_answer_len = _int_option("max_answer_len", max_answer_len, 30, minimum=1)
        threshold = 0.0 if null_threshold is None else float(null_threshold)
        if not math.isfinite(threshold):
            raise UserError(f"null_threshold must be a finite number, got {null_threshold!r}")
        self.null_threshold = threshold

    @property
    def num_outputs(self) -> int:
        return 2   # start, end

    def options(self) -> dict:
        return {"doc_stride": self.doc_stride, "n_best": self.n_best,
                "max_answer_len": self.max_answer_len, "null_threshold": self.null_threshold}

    def group_of(self, example: QAExample):
        return example.title or example.context   # an article stays on one side of a split

    # ---- rows ---------------------------------------------------------------------------
    def read_file(self, path, *, require_labels: bool = True, skip_bad_rows: bool = False):
        data = _load_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise DataFormatError(f"{path}: expected SQuAD JSON, an object with a \"data\" list "
                                  f"of articles: {SQUAD_LAYOUT}")
        bad = BadRows(skip_bad_rows)
        out: list[QAExample] = []
        seen: set[str] = set()
        for a, article in enumerate(data["data"]):
            where = f"{path}: data[{a}]"
            if not isinstance(article, dict):
                bad(f"{where}: expected an article object, found {_kind(article)}")
                continue
            title, paragraphs = article.get("title", ""), article.get("paragraphs")
            if not isinstance(title, str):
                bad(f"{where}: 'title' must be a string, found {_kind(title)}")
            elif not isinstance(paragraphs, list):
                bad(f"{where}: " + ("missing 'paragraphs'" if paragraphs is None else
                                    f"'paragraphs' must be a list, found {_kind(paragraphs)}"))
            else:
                for p, paragraph in enumerate(paragraphs):
                    self._read_paragraph(path, paragraph, f"data[{a}].paragraphs[{p}]",
                                         title, require_labels, bad, seen, out)
        bad.report(path)
        if not out:
            raise DataFormatError(f"{path}: no questions" + (
                f" ({len(bad.skipped)} skipped as malformed)" if bad.skipped else ""))
        return out

    def _read_paragraph(self, path, paragraph, where: str, title: str, require_labels: bool,
                        bad: BadRows, seen: set[str], out: list[QAExample]) -> None:
        """Append the paragraph's questions to ``out``; ``bad`` gets each malformed one (or
        the paragraph, when it is malformed itself). ``where``: its JSON path."""
        if not isinstance(paragraph, dict):
            return bad(f"{path}: {where}: expected a paragraph object, found {_kind(paragraph)}")
        context, qas = paragraph.get("context"), paragraph.get("qas")
        for key, value, kind in (("context", context, str), ("qas", qas, list)):
            if value is None:
                return bad(f"{path}: {where}: missing '{key}'")
            if not isinstance(value, kind):
                return bad(f"{path}: {where}: '{key}' must be a {kind.__name__}, found "
                           f"{_kind(value)}")
        if not context.strip():
            return bad(f"{path}: {where}: empty context")
        for q, qa in enumerate(qas):
            message, example = self._question(qa, f"{where}.qas[{q}]", title, context,
                                              require_labels)
            if message is None and example.id in seen:
                message = f"question {example.id}: duplicate id (ids key the predictions file)"
            if message:
                bad(f"{path}: {message}")
                continue
            seen.add(example.id)
            out.append(example)

    def _question(self, qa, where: str, title: str, context: str, require_labels: bool
                  ) -> tuple[str | None, QAExample | None]:
        """(error message, None) or (None, the example) for one question object."""
        if not isinstance(qa, dict):
            return f"{where}: expected a question object, found {_kind(qa)}", None
        qid = qa.get("id")
        if qid is None:
            return f"{where}: missing 'id'", None
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or qid == "":
            return f"{where}: 'id' must be a non-empty string, found {qid!r}", None
        who = f"question {qid}"
        question = qa.get("question")
        if question is None:
            return f"{who}: missing 'question'", None
        if not isinstance(question, str):
            return f"{who}: 'question' must be a string, found {_kind(question)}", None
        if not question.strip():
            return f"{who}: empty question", None
        impossible = qa.get("is_impossible")
        if impossible is not None and not isinstance(impossible, bool):
            return f"{who}: 'is_impossible' must be true or false, found {impossible!r}", None
        raw = qa.get("answers")
        if raw is not None and not isinstance(raw, list):
            return f"{who}: 'answers' must be a list, found {_kind(raw)}", None
        answers = []
        for k, answer in enumerate(raw or []):
            message = _answer_error(answer, context, f"{who}: answers[{k}]", who)
            if message:
                return message, None
            answers.append({"text": answer["text"], "answer_start": answer["answer_start"]})
        if not require_labels:
            state = False if answers else (True if impossible and self.version2 else None)
            return None, QAExample(str(qid), title, context, question, answers, state)
        if not self.version2:
            if impossible:
                return (f"{who} is marked is_impossible; SQuAD 1.1 (task squad) needs an answer "
                        "for every question: use --task squad_v2"), None
            if not answers:
                return (f"{who}: " + ("missing 'answers'" if raw is None else "no answers")
                        + "; SQuAD 1.1 (task squad) needs an answer for every question"), None
            return None, QAExample(str(qid), title, context, question, answers, False)
        if impossible and answers:
            return f"{who} is marked is_impossible but has answers", None
        if impossible is False and not answers:
            return f"{who}: no answers and not marked is_impossible", None
        if raw is None and not impossible:
            return f"{who}: missing 'answers'", None
        return None, QAExample(str(qid), title, context, question, answers, not answers)

    def read_hub(self, split: str) -> list[QAExample]:
        data = load_hub_split(self, split, SQUAD_LAYOUT)
        where = f"{'/'.join(self.hub)} split {split}"
        bad = BadRows(skip=True)   # a faulty hub row is skipped and reported, not fatal
        out = []
        for i, row in enumerate(data):
            gold = row.get("answers") or {"text": [], "answer_start": []}
            qa = {"id": row.get("id"), "question": row.get("question"),
                  "answers": [{"text": t, "answer_start": int(s)}
                              for t, s in zip(gold["text"], gold["answer_start"])]}
            context = row.get("context")
            if not isinstance(context, str) or not context.strip():
                bad(f"{where} row {i}: empty or missing context")
                continue
            message, example = self._question(qa, f"row {i}", row.get("title") or "", context,
                                              require_labels=True)
            if message:
                bad(f"{where}: {message}")
            else:
                out.append(example)
        bad.report(where)
        if not out:
            raise DataFormatError(f"{where}: no questions")
        return out

    # ---- features -----------------------------------------------------------------------
    def encode(self, examples, backbone, max_len, *, show_progress=False) -> Encoded:
        from tqdm.auto import tqdm

        max_len = min(max_len, getattr(backbone, "max_positions", max_len))
        specials = backbone.num_special_tokens(True)
        features: list[dict] = []
        meta: list[dict] = []
        last_context, ids, offsets = None, [], np.zeros((0, 2), np.int32)
        lost = 0   # answerable questions whose answer is in no window
        for e, ex in enumerate(tqdm(examples, desc="tokenizing", disable=not show_progress,
                                    leave=False, mininterval=1.0)):
            question = backbone.encode_text(ex.question.strip())
            if len(question) > max_len - specials - 1:
                raise DataFormatError(
                    f"question {ex.id} is {len(question)} tokens; --max-seq-len {max_len} "
                    f"leaves no room for the context ({specials} special tokens); raise "
                    "--max-seq-len or shorten the question")
            if ex.context != last_context:
                last_context = ex.context   # questions of a paragraph come together
                ids, offsets = context_tokens(backbone.tokenizer, ex.context)
            span = answer_tokens(ex, offsets)
            found = False
            _, context_start = backbone.segment_starts(len(question), True)
            for first, end in plan_windows(len(ids), max_len - specials - len(question),
                                           self.doc_stride):
                window = ids[first:end]
                f = backbone.encode(question, window, max_len)
                got = list(f["input_ids"])
                if (len(got) != len(question) + len(window) + specials
                        or got[context_start:context_start + len(window)] != window):
                    raise RuntimeError(f"{type(backbone).__name__}.encode did not keep the "
                                       "context window where segment_starts says")
                start_pos = end_pos = 0
                if span is not None and first <= span[0] and span[1] < end:
                    start_pos = context_start + span[0] - first
                    end_pos = context_start + span[1] - first
                    found = True
                f["start_positions"], f["end_positions"] = start_pos, end_pos
                features.append(f)
                meta.append({"example": e, "context_start": context_start,
                             "offsets": offsets[first:end]})
            lost += bool(ex.answers) and not ex.is_impossible and not found
        if lost:
            print(f"[ptv2] warning: {lost} of {len(examples)} answers lie in no window of "
                  f"{max_len} tokens (longer than a window, or not covered by any token) and "
                  "train as 'no answer'", file=sys.stderr)
        return Encoded(examples, features, meta)

    # ---- outputs ------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean of the start and end cross entropies (fp32). Padding positions are masked out
        of the softmax (so a row's loss does not depend on its batch); a gold position at or
        beyond the padded length is ignored (Hugging Face's clamp)."""
        logits = outputs.float()
        length = logits.shape[1]
        mask = batch.get("attention_mask")
        if mask is not None:
            padding = mask.to(logits.device) == 0
            logits = logits.masked_fill(padding.unsqueeze(-1), -1e9)
        total = logits.new_zeros(())
        for k, key in enumerate(("start_positions", "end_positions")):
            gold = batch[key].to(logits.device).long().clamp(0, length)
            summed = F.cross_entropy(logits[..., k], gold, ignore_index=length, reduction="sum")
            total = total + summed / (gold != length).sum().clamp(min=1)
        return total / 2

    def batch_results(self, outputs: torch.Tensor, batch: dict) -> list:
        """Per feature: (start logits, end logits), float32 numpy arrays over its real
        tokens."""
        logits = outputs.detach().float().cpu().numpy()
        mask = batch.get("attention_mask")
        lengths = (mask.sum(-1).tolist() if mask is not None
                   else [logits.shape[1]] * logits.shape[0])
        return [(np.ascontiguousarray(row[:int(n), 0]), np.ascontiguousarray(row[:int(n), 1]))
                for row, n in zip(logits, lengths)]

    def decode(self, results: list, encoded: Encoded) -> list[QAPrediction]:
        if len(results) != len(encoded.meta):
            raise ValueError(f"{len(results)} results for {len(encoded.meta)} features")
        windows: list[list[int]] = [[] for _ in encoded.examples]
        for i, m in enumerate(encoded.meta):
            windows[m["example"]].append(i)
        return [self._decode_example(ex, [results[i] for i in rows],
                                     [encoded.meta[i] for i in rows])
                for ex, rows in zip(encoded.examples, windows)]

    def _decode_example(self, example: QAExample, results: list, metas: list[dict]
                        ) -> QAPrediction:
        null = math.inf
        candidates: list[tuple[float, int, int]] = []   # (score, first char, end char)
        for (start, end), m in zip(results, metas):
            null = min(null, float(start[0]) + float(end[0]))
            offsets = np.asarray(m["offsets"]).reshape(-1, 2)
            n, first = len(offsets), m["context_start"]
            if n == 0:
                continue
            real = offsets[:, 0] < offsets[:, 1]
            start_logits = np.where(real, start[first:first + n].astype(np.float64), -np.inf)
            end_logits = np.where(real, end[first:first + n].astype(np.float64), -np.inf)
            starts = _top(start_logits, self.n_best)
            ends = _top(end_logits, self.n_best)
            scores = start_logits[starts][:, None] + end_logits[ends][None, :]
            length = ends[None, :] - starts[:, None] + 1
            scores = np.where((length >= 1) & (length <= self.max_answer_len), scores, -np.inf)
            rows, cols = np.nonzero(np.isfinite(scores))
            best = np.argsort(-scores[rows, cols], kind="stable")[:self.n_best]
            rows, cols = rows[best], cols[best]
            candidates += zip(scores[rows, cols].tolist(), offsets[starts[rows], 0].tolist(),
                              offsets[ends[cols], 1].tolist())
        candidates.sort(key=lambda c: -c[0])   # stable: ties keep the earlier window
        nbest, spans = [], set()
        for score, a, b in candidates:
            if (a, b) not in spans and len(nbest) < self.n_best:
                spans.add((a, b))
                nbest.append({"text": example.context[a:b], "score": score, "start": a})
        if not nbest:
            return QAPrediction("", -math.inf, math.inf, nbest=[])
        best = nbest[0]
        diff = null - best["score"]
        text = best["text"]
        if self.version2 and diff > self.null_threshold:
            text = ""
        return QAPrediction(text, best["score"], diff, best["text"],
                            (best["start"], best["start"] + len(best["text"])), nbest)

    def score(self, predictions: list, examples: list) -> dict[str, float]:
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} questions")
        unknown = [ex.id for ex in examples if ex.is_impossible is None]
        if unknown:
            raise UserError(f"cannot score questions without gold answers ({len(unknown)}, "
                             f"first: {unknown[0]})")
        golds = [[] if ex.is_impossible else [a["text"] for a in ex.answers] for ex in examples]
        texts = [_text(p) for p in predictions]
        if not self.version2:
            return squad_v1_scores(golds, texts)
        if all(isinstance(p, QAPrediction) for p in predictions):
            return squad_v2_scores(golds, texts, [p.null_score_diff for p in predictions],
                                   [p.span_text for p in predictions])
        return squad_v2_scores(golds, texts)

    def write_predictions(self, path, predictions: list, examples: list) -> None:
        """``{question id: answer}`` in input order ("" = no answer), written atomically; for
        SQuAD 2.0 also ``<stem>.null_odds.json`` (``{question id: null_score_diff}``)."""
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} questions")
        path = Path(path)
        answers = {ex.id: _text(p) for p, ex in zip(predictions, examples)}
        write_atomic(path, json.dumps(answers, ensure_ascii=False, indent=1) + "\n")
        if self.version2 and all(isinstance(p, QAPrediction) for p in predictions):
            odds = {ex.id: p.null_score_diff for p, ex in zip(predictions, examples)}
            write_atomic(null_odds_path(path), json.dumps(odds, indent=1) + "\n")

    # ---- single records: {"question", "context"}, optional "id" and "title" ---------------
    def record_fields(self) -> dict[str, str]:
        return {"question": "text", "context": "text", "id": "optional identifier",
                "title": "optional"}

    def read_record(self, row, where, position) -> QAExample:
        question = record_text(self, row, "question", where)
        context = record_text(self, row, "context", where)
        qid = row.get("id", str(position))
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise RecordError(f"{where}: field 'id' must be a string, got {short_repr(qid)}")
        return QAExample(str(qid), str(row.get("title") or ""), context, question, [], None)

    def prediction_record(self, prediction, example) -> dict:
        out = {"id": example.id, "answer": prediction.text}
        if self.version2:
            diff = prediction.null_score_diff
            out["null_score_diff"] = diff if math.isfinite(diff) else None
        return out


def null_odds_path(path) -> Path:
    """Where ``write_predictions`` puts the SQuAD 2.0 null odds next to ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".null_odds.json")


# ---- reading helpers ----------------------------------------------------------------------------
def _load_json(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x}); "
                              "re-save the file as UTF-8") from None
    if not text.strip():
        raise DataFormatError(f"{path}: the file is empty; expected SQuAD JSON: {SQUAD_LAYOUT}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})"
                              ) from None


def _answer_error(answer, context: str, where: str, who: str) -> str | None:
    if not isinstance(answer, dict):
        return f"{where}: expected an answer object, found {_kind(answer)}"
    text, start = answer.get("text"), answer.get("answer_start")
    if text is None:
        return f"{where}: missing 'text'"
    if not isinstance(text, str):
        return f"{where}: 'text' must be a string, found {_kind(text)}"
    if not text.strip():
        return f"{where}: empty answer text"
    if start is None:
        return f"{where}: missing 'answer_start'"
    if isinstance(start, bool) or not isinstance(start, int):
        return f"{where}: 'answer_start' must be an integer, found {start!r}"
    if not 0 <= start <= len(context) - len(text) or context[start:start + len(text)] != text:
        found = context[max(0, start):max(0, start) + len(text)]
        return (f"{who}: answer_start {start} does not point at {text!r} (the context there "
                f"reads {found!r})")
    return None


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _int_option(name: str, value, default: int, minimum: int) -> int:
    """An integer option (None: the default; "64" and 64.0 are accepted as 64)."""
    value = default if value is None else value
    try:
        number = int(value)
        ok = not isinstance(value, bool) and float(value) == number and number >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


# ---- registry -----------------------------------------------------------------------------------
def squad(doc_stride=128, n_best=20, max_answer_len=30, null_threshold=0.0, **_) -> QATask:
    return QATask("squad", False, doc_stride, n_best, max_answer_len, null_threshold)


def squad_v2(doc_stride=128, n_best=20, max_answer_len=30, null_threshold=0.0, **_) -> QATask:
    return QATask("squad_v2", True, doc_stride, n_best, max_answer_len, null_threshold)


register("squad", squad)
register("squad_v2", squad_v2)
