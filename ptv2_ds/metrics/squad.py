"""SQuAD exact match and token F1, as the official evaluation scripts define them.

Answers are compared after ``normalize_answer``: lowercase, drop every character of
``string.punctuation``, drop the articles ``a``/``an``/``the`` as whole words, collapse
whitespace. ``exact`` is 1 when the normalized strings are equal; ``f1`` is the harmonic mean
of token precision and recall over the normalized whitespace tokens (a multiset overlap). A
question scores the maximum over its gold answers. Values are percentages, as the official
scripts print them (the tagging metrics in ``spans.py`` are fractions).

SQuAD 1.1 (``squad_v1_scores``, ``evaluate-v1.1.py``): every question has gold answers, all of
them count, and an F1 with an empty side is 0 (so a gold answer that normalizes to nothing,
such as "the", only scores by exact match).

SQuAD 2.0 (``squad_v2_scores``, ``evaluate-v2.0.py``): gold answers that normalize to nothing
are dropped and a question without any keeps the single gold answer "" (unanswerable); F1 with
an empty side is 1 when both are empty, else 0. Besides ``exact``/``f1``/``total`` the result
splits the questions into ``HasAns_*`` and ``NoAns_*`` (each only when there are such
questions). With each question's ``null_score_diff`` (null score minus best span score, the
model's "no answer" odds) it also reports the best threshold as the official script's
``find_best_thresh`` computes it: questions are sorted by their odds and switched from "no
answer" to "the span" one at a time; the threshold kept is the odds of the last question
switched at the best running score. Predicting "no answer" when the odds exceed
``best_f1_thresh`` (``--null-threshold``) would have scored ``best_f1``.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, articles and extra whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, *, empty_match: bool = True) -> float:
    """Token F1 of the normalized answers. ``empty_match``: both empty scores 1 (SQuAD 2.0);
    without it an empty side always scores 0 (SQuAD 1.1)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(empty_match and pred_tokens == gold_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _check(golds: Sequence, predictions: Sequence) -> None:
    if len(golds) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not golds:
        raise ValueError("no questions to score")


def squad_v1_scores(golds: Sequence[Sequence[str]], predictions: Sequence[str]
                    ) -> dict[str, float]:
    """``exact``, ``f1`` (percent) and ``total`` over questions with gold answer lists."""
    _check(golds, predictions)
    exact = f1 = 0.0
    for answers, pred in zip(golds, predictions):
        if not answers:
            raise ValueError("SQuAD 1.1 scoring needs at least one gold answer per question")
        exact += max(exact_match(pred, g) for g in answers)
        f1 += max(f1_score(pred, g, empty_match=False) for g in answers)
    total = len(golds)
    return {"f1": 100.0 * f1 / total, "exact": 100.0 * exact / total, "total": total}


def squad_v2_scores(golds: Sequence[Sequence[str]], predictions: Sequence[str],
                    null_score_diffs: Sequence[float] | None = None,
                    span_predictions: Sequence[str] | None = None) -> dict[str, float]:
    """The official SQuAD 2.0 result for questions with gold answer lists ([] =
    unanswerable) and predicted texts ("" = no answer).

    ``null_score_diffs`` (one per question) adds ``best_exact``/``best_f1`` and their
    thresholds. The threshold search switches each question to its best non-null span,
    ``span_predictions`` (default: ``predictions``); pass it when ``predictions`` already
    hold "" for the questions predicted unanswerable."""
    _check(golds, predictions)
    exact: list[float] = []
    f1: list[float] = []
    has_answer: list[bool] = []
    for answers, pred in zip(golds, predictions):
        kept = [g for g in answers if normalize_answer(g)] or [""]
        has_answer.append(bool(answers))
        exact.append(max(exact_match(pred, g) for g in kept))
        f1.append(max(f1_score(pred, g) for g in kept))
    total = len(golds)
    out = {"f1": 100.0 * sum(f1) / total, "exact": 100.0 * sum(exact) / total, "total": total}
    for prefix, want in (("HasAns", True), ("NoAns", False)):
        rows = [i for i, h in enumerate(has_answer) if h == want]
        if rows:
            out[f"{prefix}_f1"] = 100.0 * sum(f1[i] for i in rows) / len(rows)
            out[f"{prefix}_exact"] = 100.0 * sum(exact[i] for i in rows) / len(rows)
            out[f"{prefix}_total"] = len(rows)
    if null_score_diffs is not None:
        if len(null_score_diffs) != total:
            raise ValueError(f"{len(null_score_diffs)} null score differences for {total} "
                             "questions")
        spans = predictions if span_predictions is None else span_predictions
        if len(spans) != total:
            raise ValueError(f"{len(spans)} span predictions for {total} questions")
        # the score each question gets when its span is predicted (official: the raw score
        # of the prediction it is given), computed against the same kept gold answers
        span_exact, span_f1 = exact, f1
        if span_predictions is not None:
            span_exact, span_f1 = [], []
            for answers, pred in zip(golds, spans):
                kept = [g for g in answers if normalize_answer(g)] or [""]
                span_exact.append(max(exact_match(pred, g) for g in kept))
                span_f1.append(max(f1_score(pred, g) for g in kept))
        for name, scores in (("exact", span_exact), ("f1", span_f1)):
            best, thresh = find_best_thresh(spans, scores, null_score_diffs, has_answer)
            out[f"best_{name}"] = best
            out[f"best_{name}_thresh"] = thresh
    return out


def find_best_thresh(span_predictions: Sequence[str], scores: Sequence[float],
                     odds: Sequence[float], has_answer: Sequence[bool]) -> tuple[float, float]:
    """(best percent score, its threshold) over "no answer when odds > threshold".

    Start with every question answered "no answer" (each unanswerable one scores 1), then in
    increasing order of odds (ties: input order) switch one question at a time to its span:
    an answerable question gains its span's score, an unanswerable one loses 1 if the span is
    not empty. The best running score and the odds of the question that reached it win; the
    threshold stays 0.0 when answering nothing is best."""
    current = best = float(sum(1 for h in has_answer if not h))
    thresh = 0.0
    for i in sorted(range(len(odds)), key=lambda i: odds[i]):
        if has_answer[i]:
            current += scores[i]
        elif span_predictions[i]:
            current -= 1
        if current > best:
            best, thresh = current, float(odds[i])
    return 100.0 * best / len(odds), thresh
