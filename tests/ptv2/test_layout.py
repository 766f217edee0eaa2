"""Input layout: special tokens, truncation of the longer segment, cloze templates."""
import pytest

from ptv2_ds.backbones import HFEncoder
from ptv2_ds.backbones.layout import render_cloze, split_template, truncate_pair


def test_truncate_longer_segment_first():
    assert truncate_pair([1, 2, 3], [4, 5, 6, 7, 8], 6) == ([1, 2, 3], [4, 5, 6])
    assert truncate_pair([1, 2, 3, 4], [5], 3) == ([1, 2], [5])
    assert truncate_pair([1, 2], None, 5) == ([1, 2], None)


def test_split_template():
    assert split_template("{a} ? {mask} , {b}") == ["{a}", " ? ", "{mask}", " , ", "{b}"]
    with pytest.raises(ValueError, match="exactly once"):
        split_template("{a} {b}")


def test_render_cloze_keeps_mask_when_truncating():
    literal = {" ?": [90], " ,": [91]}
    ids, mask_index = render_cloze("{a} ? {mask} , {b}", [1, 2, 3, 4], [5, 6], 99,
                                   lambda text: literal[text], budget=7)
    assert ids == [1, 2, 90, 99, 91, 5, 6] and mask_index == 3


def test_bert_layout(tiny_bert_dir):
    enc = HFEncoder(tiny_bert_dir)
    f = enc.encode([2001, 2002, 2003], [2004, 2005], max_len=6)
    assert f["input_ids"] == [101, 2001, 2002, 102, 2004, 102]  # longer (a) truncated
    assert f["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    cloze = enc.encode(enc.encode_text("good film"), None, 16, "{a} It was {mask} .")
    assert cloze["input_ids"][cloze["mask_index"]] == enc.tokenizer.mask_token_id
    batch = enc.collate([f, cloze])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][0].tolist() == [1] * 6 + [0] * (len(cloze["input_ids"]) - 6)


def test_roberta_layout(tiny_roberta_dir):
    enc = HFEncoder(tiny_roberta_dir)
    t = enc.tokenizer
    f = enc.encode([10, 11], [12], max_len=16)
    assert f["input_ids"] == [t.cls_token_id, 10, 11, t.sep_token_id, t.sep_token_id, 12,
                              t.sep_token_id]
    assert enc.max_positions == 128  # 130 rows minus padding_idx + 1
