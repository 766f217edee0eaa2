"""Fixtures shared by the task-family tests: tiny BERT/RoBERTa backbones in eval mode."""
import pytest


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    from ptv2_ds.backbones.hf import HFEncoder
    return HFEncoder(tiny_bert_dir).eval()


@pytest.fixture(scope="module")
def roberta(tiny_roberta_dir):
    from ptv2_ds.backbones.hf import HFEncoder
    return HFEncoder(tiny_roberta_dir).eval()


@pytest.fixture(scope="module")
def dropout_bert_dir(tmp_path_factory) -> str:
    """The tiny BERT of tests/conftest.py with hidden and attention dropout 0.1."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    from tests.conftest import TINY, minilm_dir

    out = tmp_path_factory.mktemp("tiny_bert_dropout")
    tok = BertTokenizerFast.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, **{**TINY, "hidden_dropout_prob": 0.1,
                                                      "attention_probs_dropout_prob": 0.1})
    BertForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
