"""Known-answer tests for glm.inputs: the sep mask, classification and cloze inputs."""
import pytest
import torch

from glm.inputs import classification_input, cloze_input, sep_attention_mask

CLS, SEP, EOS, PAD, MASK, SOP = 50, 51, 52, 0, 53, 54


def test_sep_mask_partial_part_a():
    got = sep_attention_mask(torch.tensor([2]), 5)
    expected = torch.tensor([
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert got.shape == (1, 1, 5, 5) and got.dtype == torch.bool
    assert torch.equal(got[0, 0], expected)


def test_sep_mask_full_and_empty_part_a_batched():
    got = sep_attention_mask(torch.tensor([5, 0]), 5)
    assert got.shape == (2, 1, 5, 5)
    assert torch.equal(got[0, 0], torch.ones(5, 5, dtype=torch.bool))
    causal = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(got[1, 0], causal)


def test_sep_mask_rejects_bad_sep():
    with pytest.raises(ValueError):
        sep_attention_mask(torch.tensor([[2]]), 5)
    with pytest.raises(ValueError):
        sep_attention_mask(torch.tensor([2.0]), 5)


def test_classification_pair():
    out = classification_input([1, 2], [3], cls_id=CLS, sep_id=SEP, eos_id=EOS,
                               max_len=8, pad_id=PAD)
    assert out["input_ids"].tolist() == [CLS, 1, 2, SEP, 3, EOS, PAD, PAD]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7], [0] * 8]
    assert out["sep"].item() == 6
    assert out["cls_index"].item() == 0


def test_classification_single():
    out = classification_input([7, 8, 9], None, cls_id=CLS, sep_id=SEP, eos_id=EOS,
                               max_len=6, pad_id=PAD)
    assert out["input_ids"].tolist() == [CLS, 7, 8, 9, EOS, PAD]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5], [0] * 6]
    assert out["sep"].item() == 5


def test_classification_truncates_longer_first():
    # budget 8 - 3 specials = 5; A has 6, B has 2: A loses 3 tokens from its end.
    out = classification_input([1, 2, 3, 4, 5, 6], [10, 11], cls_id=CLS, sep_id=SEP,
                               eos_id=EOS, max_len=8, pad_id=PAD)
    assert out["input_ids"].tolist() == [CLS, 1, 2, 3, SEP, 10, 11, EOS]
    assert out["sep"].item() == 8
    # both long: the longer loses a token each step, A on a tie: (4,4)->(3,4)->(3,3)->(2,3).
    out = classification_input([1, 2, 3, 4], [10, 11, 12, 13], cls_id=CLS, sep_id=SEP,
                               eos_id=EOS, max_len=8, pad_id=PAD)
    assert out["input_ids"].tolist() == [CLS, 1, 2, SEP, 10, 11, 12, EOS]
    # single sentence truncation
    out = classification_input(list(range(1, 10)), None, cls_id=CLS, sep_id=SEP,
                               eos_id=EOS, max_len=5, pad_id=PAD)
    assert out["input_ids"].tolist() == [CLS, 1, 2, 3, EOS]


def test_classification_max_len_too_small():
    with pytest.raises(ValueError):
        classification_input([1], [2], cls_id=CLS, sep_id=SEP, eos_id=EOS, max_len=2, pad_id=PAD)


def test_classification_pads_invisible_to_real_queries():
    out = classification_input([1, 2], [3], cls_id=CLS, sep_id=SEP, eos_id=EOS,
                               max_len=9, pad_id=PAD)
    n = out["sep"].item()
    mask = sep_attention_mask(out["sep"].view(1), 9)[0, 0]
    assert mask[:n, :n].all()                 # real tokens: fully bidirectional
    assert not mask[:n, n:].any()             # no real query sees a pad key


def test_cloze_known_answer():
    out = cloze_input([5, 6, MASK, 7], mask_id=MASK, sop_id=SOP, max_len=7, pad_id=PAD)
    assert out["input_ids"].tolist() == [5, 6, MASK, 7, SOP, PAD, PAD]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 2, 0, 0], [0, 0, 0, 0, 1, 0, 0]]
    assert out["sep"].item() == 4
    assert out["target_index"].item() == 4


def test_cloze_exact_fit():
    out = cloze_input([MASK, 9], mask_id=MASK, sop_id=SOP, max_len=3, pad_id=PAD)
    assert out["input_ids"].tolist() == [MASK, 9, SOP]
    assert out["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize("context", [[1, 2, 3], [MASK, 1, MASK]])
def test_cloze_needs_exactly_one_mask(context):
    with pytest.raises(ValueError, match=str(context.count(MASK))):
        cloze_input(context, mask_id=MASK, sop_id=SOP, max_len=10, pad_id=PAD)


def test_cloze_too_long():
    with pytest.raises(ValueError, match="truncate"):
        cloze_input([1, MASK, 2], mask_id=MASK, sop_id=SOP, max_len=3, pad_id=PAD)
