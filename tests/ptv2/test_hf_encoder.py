"""HFEncoder loading: LM-head check, quiet load report, pretrained pooler, long-text warning."""
import os

import pytest
import torch
from safetensors import safe_open

from ptv2_ds.backbones import HFEncoder
from tests.conftest import minilm_dir


@pytest.fixture(scope="module")
def minilm():
    return HFEncoder(minilm_dir())


def test_verbalizer_on_a_checkpoint_without_mlm_head_is_refused():
    with pytest.raises(ValueError) as err:
        HFEncoder(minilm_dir(), with_lm_head=True)
    msg = str(err.value)
    assert msg.startswith(f"{minilm_dir()}: --head verbalizer needs the checkpoint's masked-LM "
                          "head, but these weights are missing: cls.predictions.")
    assert "cls.predictions.transform.dense.weight" in msg
    assert msg.endswith("(a sentence-embedding checkpoint has none); use --head linear or a "
                        "checkpoint trained with MLM")


def test_verbalizer_on_a_masked_lm_checkpoint_loads_its_head(tiny_bert_dir, tiny_roberta_dir):
    from transformers import BertForMaskedLM

    enc = HFEncoder(tiny_bert_dir, with_lm_head=True)
    ref = BertForMaskedLM.from_pretrained(tiny_bert_dir)
    for name, tensor in ref.cls.state_dict().items():
        assert torch.equal(enc.lm_head.state_dict()[name], tensor), name
    assert enc.pretrained_pooler is None
    assert HFEncoder(tiny_roberta_dir, with_lm_head=True).lm_head is not None


def test_minilm_load_prints_no_transformers_report(capfd):
    capfd.readouterr()
    HFEncoder(minilm_dir())
    out, err = capfd.readouterr()
    for text in ("UNEXPECTED", "LOAD REPORT", "Loading weights"):
        assert text not in out + err


def test_missing_encoder_weights_are_reported(tmp_path, tiny_bert_dir):
    from safetensors.torch import load_file, save_file

    for name in os.listdir(tiny_bert_dir):
        if name != "model.safetensors":
            (tmp_path / name).write_bytes(open(os.path.join(tiny_bert_dir, name), "rb").read())
    sd = load_file(os.path.join(tiny_bert_dir, "model.safetensors"))
    sd = {k: v for k, v in sd.items() if "encoder.layer.1.output.dense" not in k}
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.warns(UserWarning, match=r"2 weights are missing from the checkpoint and were "
                                         r"randomly initialised: encoder.layer.1.output.dense"):
        HFEncoder(str(tmp_path))


def test_pretrained_pooler_is_the_checkpoints_frozen_pooler(minilm):
    pooler = minilm.pretrained_pooler
    assert pooler is not None and minilm.encoder.pooler is None
    backbone_params = {id(p) for p in minilm.parameters()}
    assert all(id(p) in backbone_params for p in pooler.parameters())
    with safe_open(os.path.join(minilm_dir(), "model.safetensors"), "pt") as f:
        w, b = f.get_tensor("pooler.dense.weight"), f.get_tensor("pooler.dense.bias")
    hidden = torch.randn(2, 5, minilm.hidden_size)
    with torch.no_grad():
        got = pooler(hidden)
    torch.testing.assert_close(got, torch.tanh(hidden[:, 0] @ w.T + b))


def test_no_pretrained_pooler_without_pooler_weights(tiny_bert_dir):
    enc = HFEncoder(tiny_bert_dir)  # saved from BertForMaskedLM: no pooler weights
    assert enc.pretrained_pooler is None and enc.encoder.pooler is None
    assert not any("pooler" in name for name, _ in enc.named_parameters())


def test_glm_backbone_has_no_pretrained_pooler():
    from ptv2_ds.backbones.glm import GLMBackbone

    assert GLMBackbone.pretrained_pooler is None


def test_long_text_gives_no_false_length_warning(tiny_bert_dir, capfd):
    enc = HFEncoder(tiny_bert_dir)
    capfd.readouterr()
    ids = enc.encode_text(" ".join(["movie"] * 1000))
    assert len(ids) == 1000 > enc.tokenizer.model_max_length
    out, err = capfd.readouterr()
    assert "Token indices sequence length is longer" not in out + err
    f = enc.encode(ids, None, max_len=64)
    assert len(f["input_ids"]) == 64
