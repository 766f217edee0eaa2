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


def _literal_stub(text):
    return {",": [91], "?": [90]}[text.strip()]


def test_render_cloze_counts_every_repeated_literal():
    a, b = list(range(1, 11)), list(range(11, 21))
    ids, mask_index = render_cloze("{a} , {mask} , {b}", a, b, 99, _literal_stub, budget=16)
    assert len(ids) == 16  # was 17: the second " , " was not counted
    assert ids == a[:7] + [91, 99, 91] + b[:6] and mask_index == 8


def test_render_cloze_counts_every_copy_of_a_text_slot():
    a = list(range(1, 21))
    ids, mask_index = render_cloze("{a} {a} ? {mask}", a, None, 99, _literal_stub, budget=16)
    assert len(ids) == 16  # was 30: a truncated as if it appeared once
    assert ids == a[:7] + a[:7] + [90, 99] and mask_index == 15
    ids, _ = render_cloze("{b} ? {a} {b} {mask}", a, a, 99, _literal_stub, budget=11)
    assert len(ids) == 11  # 2 * len(b) + len(a) = 9
    for budget in range(4, 40):  # the longest template has 4 fixed tokens
        for template in ("{a} {a} ? {mask}", "{a} , {mask} , {b} , {b}", "{mask} {b} , {a}"):
            ids, _ = render_cloze(template, a, a[:5], 99, _literal_stub, budget=budget)
            assert len(ids) <= budget, (template, budget)


def test_render_cloze_with_repeats_on_bert_fits_the_budget(tiny_bert_dir):
    enc = HFEncoder(tiny_bert_dir)
    text = enc.encode_text("the movie was great fun and the actors were good " * 3)
    for template in ("{a} , {mask} , {b}", "{a} {a} ? {mask}"):
        f = enc.encode(text, text, 18, template)
        assert len(f["input_ids"]) == 18, template
        assert f["input_ids"][f["mask_index"]] == enc.tokenizer.mask_token_id


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
