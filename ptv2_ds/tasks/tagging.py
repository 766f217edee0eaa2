"""Sequence tagging: named-entity recognition and semantic role labelling (one tag per word).

Registered tasks and the files they read (blank lines separate sentences; a file's last
sentence counts even without a trailing blank line, which the official loaders drop):

``conll03``    CoNLL-2003: ``token POS chunk NER``, space-separated, ``-DOCSTART-`` lines
               skipped; IOB2 tags over PER/ORG/LOC/MISC in the order of the official code and
               of the hub data set ``conll2003`` (whose ``ner_tags`` are indices into it).
``conll04``    CoNLL-04 entities: ``token TAG``; IOB2 over Loc/Peop/Org/Other, official order.
``ontonotes``  OntoNotes 5.0 as the ``.sd.conllx`` files the official code reads: tab-separated,
               the token in column 2 (index 1), the tag in the last column. The tags there are
               already IOB2 strings (the official loader takes them as they are, no
               conversion); 18 types, 37 labels in the official order (B-*, I-*, then O).
``tagging``    any CoNLL-style file: whitespace- or tab-separated columns, ``-DOCSTART-``
               skipped, the token in ``token_column`` and the tag in ``tag_column`` (negative
               counts from the end). The label set is read from the training file.
``conll05``,   SRL, one predicate instance per line: ``<predicate index> w1 .. wn ||| t1 .. tn``
``conll12``    (the index is 0-based, BIO tags, one per word). The label set is read from the
               training file, as for ``tagging`` (the official code hard-codes lists of 106
               CoNLL-05 and 116 CoNLL-12 labels; reading them from the data keeps the tags
               that occur in training, so the head may be narrower). No hub data set.

Label sets read from data are sorted with ``O`` first (``O`` is always included); a dev or test
tag outside the training set is a ``file:line`` error. Every task's ``options()`` holds its
labels (and columns), so inference rebuilds the same head mapping.

Malformed lines raise ``DataFormatError("file:line: ...")``; with ``skip_bad_rows`` the whole
sentence (SRL: the line) is skipped and counted. Prediction input (``require_labels=False``) may
leave out the tag column: the file's first token line decides whether it holds tags (it does
when it has the format's column count -- conll03 4, conll04 2 -- or, without a fixed count, as
many columns as the training file had, ``num_columns`` in the options; unknown: any column
after the token), and every later line must have as many columns. SRL prediction lines may
stop before ``|||`` or leave the tags empty.

Features. Each sentence is sub-tokenized with one tokenizer call on its words, each prefixed
with a space (``" " + word``): what ``add_prefix_space=True`` does in the official code for
byte-level BPE (RoBERTa, GLM); WordPiece ignores the space. A word that yields no sub-token
(a zero-width character) becomes the unknown token. The first sub-token of a word carries its
label index; its other sub-tokens, special tokens, the SRL predicate segment and padding carry
-100 (ignored by the loss and by decoding).

SRL marks the predicate as the official code does: the sentence, the tokenizer's separator,
then the predicate word, encoded as a pair (BERT ``[CLS] sentence [SEP] predicate [SEP]``,
RoBERTa ``<s> sentence </s></s> predicate </s>``; the official code passes the literal text
``"[SEP]"``, which is the separator only for BERT).

Long sentences are never truncated: a sentence whose sub-tokens exceed ``budget`` = max_len -
special tokens (- the predicate's sub-tokens for SRL, at most half of the room) is split into windows of whole words
(``plan_windows``). A window takes as many words as fit; the next one starts at the first word
boundary at least ``budget // 2`` sub-tokens after the window's start (never past its end), so
consecutive windows overlap by about half a window. Each word is decided by exactly one window:
the one where it has the most context, i.e. the largest min(words to the window's left edge,
words to its right edge), an edge at the sentence's start or end counting as unlimited context;
ties go to the earlier window (``assign_words``). A single word longer than the budget keeps its
first ``budget`` sub-tokens (its tag sits on the first one).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..metrics.spans import ner_scores, srl_scores
from .base import (BadRows, Encoded, RecordError, Task, load_hub_split, record_value,
                   register, short_repr)
from .readers import DataFormatError, read_lines

CONLL03_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
CONLL04_LABELS = ("O", "B-Loc", "B-Peop", "B-Org", "B-Other", "I-Loc", "I-Peop", "I-Org",
                  "I-Other")
ONTONOTES_TYPES = ("CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY",
                   "NORP", "ORDINAL", "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME",
                   "WORK_OF_ART")
ONTONOTES_LABELS = (tuple(f"B-{t}" for t in ONTONOTES_TYPES)
                    + tuple(f"I-{t}" for t in ONTONOTES_TYPES) + ("O",))

IGNORE = -100


@dataclass
class TaggedSentence:
    """One sentence (SRL: one predicate instance). ``tags`` is None for unlabeled input;
    ``predicate`` is the 0-based index of the SRL predicate word."""

    words: list[str]
    tags: list[str] | None
    predicate: int | None = None


@dataclass(frozen=True)
class ColumnFormat:
    """Where a CoNLL-style line keeps its token and tag.

    ``columns``: the fixed column count of the format (None: whatever the file's first token
    line has, the same on every line). ``tabs``: split on tabs only (tokens may then hold
    spaces); otherwise on tabs if the line has one, else on runs of whitespace."""

    token_column: int = 0
    tag_column: int = -1
    columns: int | None = None
    tabs: bool = False
    layout: str = "token ... tag"


def _format_labels(labels) -> str:
    labels = list(labels)
    shown = ", ".join(labels[:40])
    return f"[{shown}{f', ... ({len(labels)} in all)' if len(labels) > 40 else ''}]"


# ---- windows -----------------------------------------------------------------------------------
def plan_windows(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` covering every word, each holding at most ``budget``
    sub-tokens (``lengths[i]`` = sub-tokens of word i, each at most ``budget``); one window
    when the whole sentence fits. See the module docstring for the stride."""
    n = len(lengths)
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + length)
    if offsets[-1] <= budget:
        return [(0, n)]
    half = max(1, budget // 2)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + 1
        while end < n and offsets[end + 1] - offsets[start] <= budget:
            end += 1
        windows.append((start, end))
        if end >= n:
            return windows
        nxt = start + 1
        while nxt < end and offsets[nxt] - offsets[start] < half:
            nxt += 1
        start = nxt


def assign_words(windows: list[tuple[int, int]], n: int) -> list[int]:
    """For every word, the index of the window that decides its tag (most context; ties: the
    earlier window)."""
    owner = [-1] * n
    best = [-1] * n
    for k, (start, end) in enumerate(windows):
        for i in range(start, end):
            left = i - start if start > 0 else n
            right = end - 1 - i if end < n else n
            score = min(left, right)
            if score > best[i]:
                best[i], owner[i] = score, k
    return owner


def word_pieces(backbone, words: list[str]) -> list[list[int]]:
    """Sub-token ids of every word (no special tokens), with the leading-space convention;
    one tokenizer call for the sentence."""
    tokenizer = backbone.tokenizer
    ids = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    return [list(p) if len(p) else [unk] for p in ids]


# ---- the family --------------------------------------------------------------------------------
class TaggingTask(Task):
    """NER-style tagging over CoNLL column files.

    Args:
        name: the registered task name.
        fmt: the column layout.
        labels: the tag set (index = head output); None or () = read it from the training
            file (``fit_labels``).
        fixed: whether ``labels`` is the format's own fixed set (messages only).
        hub: ``datasets.load_dataset(*hub)`` with fields ``tokens``/``ner_tags``, or None.
    """

    family = "tagging"
    metrics = ("f1", "precision", "recall")
    heads = {"linear": "token"}  # dropout + Linear on every token
    pad_values = {"labels": IGNORE}
    default_max_seq_len = 256

    def __init__(self, name: str, fmt: ColumnFormat, labels=None, fixed: bool = False,
                 hub: tuple[str, ...] | None = None, num_columns: int | None = None):
        self.name = name
        self.fmt = fmt
        self.labels = _check_labels(name, labels)
        self.fixed = fixed and bool(self.labels)
        self.hub = hub
        self.file_format = f"CoNLL columns ({fmt.layout})"
        # the column count of the training file: tells a tagless prediction line from a
        # tagged one in formats without a fixed count
        self.num_columns = fmt.columns or num_columns

    def options(self) -> dict:
        out = {"labels": list(self.labels)}
        if not self.fmt.columns:
            out["num_columns"] = self.num_columns
        if self.name == "tagging":
            out.update(token_column=self.fmt.token_column, tag_column=self.fmt.tag_column)
        return out

    # ---- rows ---------------------------------------------------------------------------
    def fit_labels(self, train_examples: list) -> None:
        """Labels read from data: every training tag, sorted, ``O`` first. A set that is
        already fixed (the format's own, or one passed as an option) stays."""
        if self.labels:
            return
        tags = {t for ex in train_examples for t in (ex.tags or ())}
        self.labels = ("O",) + tuple(sorted(tags - {"O"}))

    def _check_tag(self, tag: str, where: str) -> str | None:
        if not tag:
            return f"{where}: empty tag"
        if self.labels and tag not in self._index:
            if self.fixed:
                return f"{where}: tag {tag!r} is not one of the {self.name} tags " \
                       f"{_format_labels(self.labels)}"
            return (f"{where}: tag {tag!r} is not in the training label set "
                    f"{_format_labels(self.labels)}")
        return None

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @labels.setter
    def labels(self, value) -> None:
        self._labels = tuple(value)
        self._index = {t: i for i, t in enumerate(self._labels)}   # tag -> head output

    def _split(self, line: str) -> list[str]:
        if self.fmt.tabs or "\t" in line:
            return [cell.strip() for cell in line.split("\t")]
        return line.split()

    def _has_tag(self, n: int) -> bool:
        """Whether a line of ``n`` columns holds a tag (prediction input may lack it)."""
        if self.num_columns:
            return n >= self.num_columns
        if self.fmt.tag_column >= 0:
            return n > self.fmt.tag_column
        return n > self.fmt.token_column + 1

    def read_file(self, path, *, require_labels: bool = True, skip_bad_rows: bool = False):
        fmt = self.fmt
        bad = BadRows(skip_bad_rows)
        sentences: list[TaggedSentence] = []
        words: list[str] = []
        tags: list[str] = []
        broken = False
        width = fmt.columns if require_labels else None   # columns every line must have
        tagged = True if require_labels else None        # whether this file holds tags
        width_line = 0

        def flush():
            nonlocal words, tags, broken
            if words and not broken:
                sentences.append(TaggedSentence(words, tags if tagged else None))
            words, tags, broken = [], [], False

        for number, line in read_lines(path):
            where = f"{path}:{number}"
            if not line.strip():
                flush()
                continue
            if line.startswith("-DOCSTART-"):
                flush()
                continue
            cells = self._split(line)
            if fmt.token_column < len(cells) and cells[fmt.token_column] == "-DOCSTART-":
                flush()
                continue
            if broken:
                continue
            message = None
            n = len(cells)
            if width is None:
                width, width_line = n, number
                if tagged is None:
                    tagged = self._has_tag(n)
            if n != width:
                expected = f"{width} columns ({fmt.layout})" if fmt.columns and require_labels \
                    else f"{width} columns like line {width_line}"
                message = f"{where}: expected {expected}, found {n}"
            elif fmt.token_column >= n:
                message = f"{where}: no token column {fmt.token_column + 1} (found {n} columns)"
            elif not cells[fmt.token_column]:
                message = f"{where}: empty token"
            elif tagged:
                tag_index = fmt.tag_column % n if -n <= fmt.tag_column < n else None
                if tag_index is None or tag_index == fmt.token_column % n:
                    message = f"{where}: no tag column (found {n} columns, {fmt.layout})"
                else:
                    message = self._check_tag(cells[tag_index], where)
            if message:
                bad(message)
                broken = True
                continue
            words.append(cells[fmt.token_column])
            if tagged:
                tags.append(cells[fmt.tag_column])
        flush()
        bad.report(path)
        if not sentences:
            raise DataFormatError(f"{path}: no sentences" + (
                f" ({len(bad.skipped)} skipped as malformed)" if bad.skipped else ""))
        if require_labels and not fmt.columns and self.num_columns is None:
            self.num_columns = width
        return sentences

    def read_hub(self, split: str) -> list:
        if self.hub is None:
            raise UserError(f"task {self.name} has no Hugging Face hub data set; pass "
                            f"--train-file/--validation-file with {self.file_format} files")
        data = load_hub_split(self, split)
        feature = data.features["ner_tags"].feature
        names = list(getattr(feature, "names", None) or self.labels)
        out = []
        for row in data:
            tags = [names[i] for i in row["ner_tags"]]
            for tag in tags:
                if tag not in self._index:
                    raise UserError(f"{'/'.join(self.hub)}: tag {tag!r} is not one of the "
                                    f"{self.name} tags {_format_labels(self.labels)}; the "
                                    "cached hub data set differs from the published one: pass "
                                    "local files with --train-file/--validation-file")
            out.append(TaggedSentence(list(row["tokens"]), tags))
        return out

    # ---- features -----------------------------------------------------------------------
    def _predicate_ids(self, example: TaggedSentence, pieces: list[list[int]]) -> list[int] | None:
        return None

    def encode(self, examples, backbone, max_len, *, show_progress=False) -> Encoded:
        from tqdm.auto import tqdm

        max_len = min(max_len, backbone.max_positions)
        if not self.labels:
            raise ValueError(f"task {self.name}: no label set yet (fit_labels on the training "
                             "examples, or pass labels)")
        index = self._index
        features, meta = [], []
        windowed = 0
        for e, ex in enumerate(tqdm(examples, desc="tokenizing", disable=not show_progress,
                                    leave=False, mininterval=1.0)):
            pieces = word_pieces(backbone, ex.words)
            ids_b = self._predicate_ids(ex, pieces)
            pair = ids_b is not None
            specials = backbone.num_special_tokens(pair)
            if pair:
                ids_b = ids_b[:max(1, (max_len - specials) // 2)]
            budget = max_len - specials - (len(ids_b) if pair else 0)
            if budget < 1:
                raise UserError(f"max sequence length {max_len} leaves no room for words "
                                f"({specials} special tokens); raise --max-seq-len")
            pieces = [p[:budget] for p in pieces]
            windows = plan_windows([len(p) for p in pieces], budget)
            windowed += len(windows) > 1
            owner = assign_words(windows, len(ex.words))
            for k, (start, end) in enumerate(windows):
                ids_a = [t for p in pieces[start:end] for t in p]
                f = backbone.encode(ids_a, ids_b, max_len)
                first, _ = backbone.segment_starts(len(ids_a), pair)
                if f["input_ids"][first:first + len(ids_a)] != ids_a:
                    raise RuntimeError(f"{type(backbone).__name__}.encode did not keep the "
                                       "words where segment_starts says")
                word_ids: list[int | None] = [None] * len(f["input_ids"])
                labels = [IGNORE] * len(f["input_ids"])
                decides = []
                position = first
                for w in range(start, end):
                    for j in range(len(pieces[w])):
                        word_ids[position + j] = w
                    if ex.tags is not None:
                        labels[position] = index[ex.tags[w]]
                    if owner[w] == k:
                        decides.append((w, position))
                    position += len(pieces[w])
                f["labels"] = labels
                features.append(f)
                meta.append({"example": e, "word_ids": word_ids, "first_word": start,
                             "end_word": end, "decides": decides})
        if windowed:
            print(f"[ptv2] warning: {windowed} of {len(examples)} sentences do not fit in "
                  f"{max_len} tokens and were split into overlapping windows of whole words",
                  file=sys.stderr)
        return Encoded(examples, features, meta)

    # ---- outputs ------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean cross entropy (fp32) over the tokens that carry a label."""
        logits = outputs.float()
        labels = batch["labels"].to(logits.device)
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                ignore_index=IGNORE, reduction="sum")
        return total / (labels != IGNORE).sum().clamp(min=1)

    def batch_results(self, outputs: torch.Tensor, batch: dict) -> list:
        """Per feature: the argmax tag id of every real token (decode keeps the first
        sub-token of each word)."""
        best = outputs.argmax(-1).cpu()
        mask = batch.get("attention_mask")
        lengths = mask.sum(-1).tolist() if mask is not None else [best.shape[1]] * len(best)
        return [row[:int(n)].tolist() for row, n in zip(best, lengths)]

    def decode(self, results: list, encoded: Encoded) -> list:
        if len(results) != len(encoded.meta):
            raise ValueError(f"{len(results)} results for {len(encoded.meta)} features")
        tags: list[list[str | None]] = [[None] * len(ex.words) for ex in encoded.examples]
        for ids, m in zip(results, encoded.meta):
            for w, position in m["decides"]:
                tags[m["example"]][w] = self.labels[int(ids[position])]
        for e, row in enumerate(tags):
            if any(t is None for t in row):
                raise RuntimeError(f"example {e}: some words got no prediction")
        return tags

    def score(self, predictions: list, examples: list) -> dict[str, float]:
        if any(ex.tags is None for ex in examples):
            raise ValueError("cannot score examples without gold tags")
        return self._scores([ex.tags for ex in examples], predictions)

    _scores = staticmethod(ner_scores)

    def prediction_record(self, tags: list[str], example: TaggedSentence) -> dict:
        return {"tokens": example.words, "tags": tags}

    # ---- single records: {"tokens": [words]} (SRL: + "predicate") -----------------------
    def record_fields(self) -> dict[str, str]:
        return {"tokens": "list of words"}

    def read_record(self, row, where, position) -> TaggedSentence:
        tokens = record_value(self, row, "tokens", where)
        if (not isinstance(tokens, list) or not tokens
                or not all(isinstance(t, str) and t.strip() and not any(c.isspace() for c in t)
                           for t in tokens)):
            raise RecordError(f"{where}: field 'tokens' of task {self.name} must be a non-empty "
                              f"list of words (strings without spaces), got {short_repr(tokens)}")
        return TaggedSentence(list(tokens), None, None)

    def write_predictions(self, path, predictions: list, examples: list) -> None:
        """One JSON line per input sentence, in input order, written atomically."""
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for tags, ex in zip(predictions, examples):
                f.write(json.dumps(self.prediction_record(tags, ex), ensure_ascii=False) + "\n")
        os.replace(tmp, path)


class SrlTask(TaggingTask):
    """Semantic role labelling, one predicate instance per line (CoNLL-05/12 as the official
    code reads them); the predicate word is appended as a second segment."""

    metrics = ("f1", "precision", "recall", "f1_with_v")

    def __init__(self, name: str, labels=None):
        super().__init__(name, ColumnFormat(layout="predicate-index words ||| tags"), labels)
        self.file_format = "SRL lines (<predicate index> w1 .. wn ||| t1 .. tn)"

    def options(self) -> dict:
        return {"labels": list(self.labels)}

    def group_of(self, example: TaggedSentence):
        return tuple(example.words)   # a sentence's predicates stay on one side of a split

    def read_hub(self, split: str) -> list:
        raise UserError(f"task {self.name} has no Hugging Face hub data set; pass "
                        f"--train-file/--validation-file with {self.file_format}")

    def read_file(self, path, *, require_labels: bool = True, skip_bad_rows: bool = False):
        bad = BadRows(skip_bad_rows)
        out: list[TaggedSentence] = []
        for number, line in read_lines(path):
            if not line.strip():
                continue
            message, example = self._parse(line, f"{path}:{number}", require_labels)
            if message:
                bad(message)
            else:
                out.append(example)
        bad.report(path)
        if not out:
            raise DataFormatError(f"{path}: no predicate instances" + (
                f" ({len(bad.skipped)} skipped as malformed)" if bad.skipped else ""))
        return out

    def _parse(self, line: str, where: str, require_labels: bool):
        parts = line.split("|||")
        if len(parts) > 2:
            return f"{where}: expected one '|||' between words and tags, found " \
                   f"{len(parts) - 1}", None
        if len(parts) == 1 and require_labels:
            return f"{where}: missing '|||' between the words and their tags", None
        left = parts[0].split()
        tags = parts[1].split() if len(parts) == 2 else []
        if not left:
            return f"{where}: missing the predicate index", None
        try:
            predicate = int(left[0])
        except ValueError:
            return f"{where}: the predicate index {left[0]!r} is not an integer", None
        words = left[1:]
        if not words:
            return f"{where}: no words", None
        if not 0 <= predicate < len(words):
            return (f"{where}: predicate index {predicate} is out of range for "
                    f"{len(words)} words (0-based)"), None
        if not tags:
            if require_labels:
                return f"{where}: no tags after '|||'", None
            return None, TaggedSentence(words, None, predicate)
        if len(tags) != len(words):
            return f"{where}: {len(tags)} tags for {len(words)} words", None
        for tag in tags:
            message = self._check_tag(tag, where)
            if message:
                return message, None
        return None, TaggedSentence(words, tags, predicate)

    def _predicate_ids(self, example, pieces):
        return list(pieces[example.predicate])

    _scores = staticmethod(srl_scores)

    def prediction_record(self, tags, example):
        return {"predicate": example.predicate, "tokens": example.words, "tags": tags}

    def record_fields(self):
        return {**super().record_fields(), "predicate": "0-based index of the predicate word"}

    def read_record(self, row, where, position):
        sentence = super().read_record(row, where, position)
        predicate = record_value(self, row, "predicate", where)
        if isinstance(predicate, bool) or not isinstance(predicate, int) \
                or not 0 <= predicate < len(sentence.words):
            raise RecordError(f"{where}: field 'predicate' of task {self.name} must be a word "
                              f"index in 0..{len(sentence.words) - 1}, got {predicate!r}")
        return TaggedSentence(sentence.words, None, predicate)


def _check_labels(name: str, labels) -> tuple[str, ...]:
    if not labels:
        return ()
    if isinstance(labels, str) or not all(isinstance(t, str) and t for t in labels):
        raise UserError(f"task {name}: labels must be a list of tag strings (the artifact's "
                        "task_options.labels)")
    if len(set(labels)) != len(labels):
        raise UserError(f"task {name}: duplicate labels in {list(labels)}")
    return tuple(labels)


# ---- registry ----------------------------------------------------------------------------------
def conll03(labels=None, **_) -> TaggingTask:
    return TaggingTask("conll03", ColumnFormat(0, 3, columns=4, layout="token POS chunk NER"),
                       labels or CONLL03_LABELS, fixed=True, hub=("conll2003",))


def conll04(labels=None, **_) -> TaggingTask:
    return TaggingTask("conll04", ColumnFormat(0, 1, columns=2, layout="token TAG"),
                       labels or CONLL04_LABELS, fixed=True)


def ontonotes(labels=None, num_columns=None, **_) -> TaggingTask:
    return TaggingTask("ontonotes", ColumnFormat(1, -1, tabs=True,
                                                 layout="tab-separated, token in column 2, "
                                                        "tag in the last"),
                       labels or ONTONOTES_LABELS, fixed=True, num_columns=num_columns)


def tagging(labels=None, token_column=0, tag_column=-1, num_columns=None, **_) -> TaggingTask:
    token_column = 0 if token_column is None else int(token_column)
    tag_column = -1 if tag_column is None else int(tag_column)
    if token_column < 0:
        raise UserError(f"--token-column counts from 0, got {token_column}")
    if token_column == tag_column:
        raise UserError(f"--token-column and --tag-column name the same column "
                        f"({token_column})")
    return TaggingTask("tagging", ColumnFormat(token_column, tag_column,
                                               layout=f"token in column {token_column + 1}, "
                                                      f"tag in column {_column_name(tag_column)}"),
                       labels, num_columns=num_columns)


def _column_name(column: int) -> str:
    if column >= 0:
        return str(column + 1)
    return "last" if column == -1 else f"{-column} from the end"


register("conll03", conll03)
register("conll04", conll04)
register("ontonotes", ontonotes)
register("tagging", tagging)
register("conll05", lambda labels=None, **_: SrlTask("conll05", labels))
register("conll12", lambda labels=None, **_: SrlTask("conll12", labels))
