"""Evaluation runs length-sorted batches and puts every result back in input order."""
import pytest
import torch

from ptv2_ds.builder import build_model
from ptv2_ds.config import ModelArgs
from ptv2_ds.tasks import build_task
from ptv2_ds.tasks.classification import Example
from ptv2_ds.trainer import predict


def test_predictions_come_back_in_input_order_whatever_the_batching(tiny_bert_dir):
    torch.manual_seed(0)
    task = build_task("sst2")
    words = "the movie was great fun and the actors were good but the plot was bad".split()
    examples = [Example(" ".join(words[: 1 + (7 * i) % len(words)]), None, None)
                for i in range(11)]  # lengths shuffled relative to input order
    model = build_model(ModelArgs(model=tiny_bert_dir, prefix_len=3), task)
    encoded = task.encode(examples, model.backbone, 32)
    one_by_one = predict(model, encoded, task, model.backbone, "cpu", 1)
    batched = predict(model, encoded, task, model.backbone, "cpu", 4)
    for a, b in zip(one_by_one, batched):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    # and each equals the example run alone, in place
    for i in (0, 5, 10):
        alone = predict(model, type(encoded)([examples[i]], [encoded.features[i]], [{"example": 0}]),
                        task, model.backbone, "cpu", 1)[0]
        assert alone["scores"] == pytest.approx(batched[i]["scores"], abs=1e-5)


def test_inference_placement_follows_the_run_on_a_gpu_and_fp32_on_the_cpu(monkeypatch):
    from ptv2_ds.errors import UserError
    from ptv2_ds.inference import inference_placement

    meta = {"precision": "fp16"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_placement("auto", "auto", meta) == ("cpu", "fp32")
    assert inference_placement("cpu", "bf16", meta) == ("cpu", "bf16")
    with pytest.raises(UserError, match="needs a GPU"):
        inference_placement("cpu", "fp16", meta)
    with pytest.raises(UserError, match="no GPU is visible"):
        inference_placement("cuda", "auto", meta)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_placement("auto", "auto", meta) == ("cuda", "fp16")
    assert inference_placement("auto", "auto", {}) == ("cuda", "fp32")  # older artifacts
