"""Artifacts: atomic writes and the streamed safetensors writer used for ZeRO-3 finetune."""
import pytest
import torch
from safetensors.torch import load_file

from ptv2_ds.artifacts import StreamedArtifact, load_artifact, save_artifact


def tensors():
    g = torch.Generator().manual_seed(0)
    return {"backbone.w": torch.randn(3, 5, generator=g), "backbone.half": torch.randn(
        7, generator=g).half(), "backbone.bf": torch.randn(2, 2, generator=g).bfloat16(),
        "backbone.ids": torch.arange(4), "backbone.flag": torch.tensor([True, False]),
        "head.empty": torch.zeros(0, 3), "head.scalar": torch.tensor(2.5)}


def test_streamed_artifact_equals_safetensors_own_writer(tmp_path):
    t = tensors()
    writer = StreamedArtifact(tmp_path / "art", [(k, tuple(v.shape), v.dtype)
                                                for k, v in t.items()], {"task": "x"})
    for name, value in t.items():
        writer.add(name, value)
    writer.close()
    meta, loaded = load_artifact(tmp_path / "art")
    assert meta["task"] == "x" and meta["format"] == "ptv2_artifact"
    assert set(loaded) == set(t)
    for name, value in t.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value)
    save_artifact(tmp_path / "ref", t, {"task": "x"})
    ref = load_file(str(tmp_path / "ref" / "model.safetensors"))
    assert all(torch.equal(ref[k], loaded[k]) for k in t)


def test_streamed_artifact_refuses_out_of_order_and_keeps_the_old_one(tmp_path):
    save_artifact(tmp_path / "art", {"a": torch.ones(2)}, {"task": "old"})
    t = tensors()
    writer = StreamedArtifact(tmp_path / "art", [(k, tuple(v.shape), v.dtype)
                                                for k, v in t.items()], {"task": "new"})
    with pytest.raises(ValueError, match="expected backbone.w"):
        writer.add("backbone.half", t["backbone.half"])
    meta, loaded = load_artifact(tmp_path / "art")  # the earlier artifact is untouched
    assert meta["task"] == "old" and torch.equal(loaded["a"], torch.ones(2))
