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
