"""GLM inside the toolkit: the foundation's CLI contract and heads on a tiny GLM."""
import json

import pytest
import torch
import torch.nn.functional as F

from ptv2_ds.backbones import load_backbone
from ptv2_ds.backbones.glm import GLMBackbone, is_glm
from ptv2_ds.cli.main import main
from ptv2_ds.heads import PoolerHead
from ptv2_ds.model import PromptedModel, PromptSettings

RTE_ROWS = [
    ("A man is playing a guitar on stage.", "A man is playing music.", "entailment"),
    ("The cat sleeps on the sofa.", "The cat is running outside.", "not_entailment"),
    ("Paris is the capital of France.", "Paris is in France.", "entailment"),
    ("The shop closed at noon.", "The shop was open all night.", "not_entailment"),
] * 4


@pytest.fixture(scope="module")
def rte_tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("rte")
    lines = [json.dumps({"premise": p, "hypothesis": h, "label": y, "idx": i})
             for i, (p, h, y) in enumerate(RTE_ROWS)]
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    (out / "val.jsonl").write_text("\n".join(lines[:8]) + "\n")
    return {"train": str(out / "train.jsonl"), "dev": str(out / "val.jsonl")}


def test_glm_detection(tiny_glm_dir, tiny_bert_dir):
    assert is_glm("glm-10b") and is_glm(tiny_glm_dir) and not is_glm(tiny_bert_dir)
    assert isinstance(load_backbone(tiny_glm_dir), GLMBackbone)


def test_preset_without_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="needs --model-path"):
        load_backbone("glm-10b")


def test_glm_classification_layout(tiny_glm_dir):
    bb = load_backbone(tiny_glm_dir)
    f = bb.encode(bb.encode_text("Hello world"), bb.encode_text(" good"), 16)
    assert f["input_ids"] == [50259, 15496, 995, 50261, 922, 50256]  # [CLS] A [SEP] B <eos>
    assert f["sep"] == 6 and f["position_ids"] == [[0, 1, 2, 3, 4, 5], [0] * 6]


def test_glm_linear_head_is_the_pooler(tiny_glm_dir):
    model = PromptedModel(load_backbone(tiny_glm_dir), PromptSettings(), 2)
    assert isinstance(model.head, PoolerHead)


def test_cloze_scores_equal_lm_logits_at_sop(tiny_glm_dir):
    bb = load_backbone(tiny_glm_dir)
    model = PromptedModel(bb, PromptSettings(prefix_len=3), 2, head="verbalizer",
                          verbalizer=["Yes", "No"]).eval()
    feats = [bb.encode(bb.encode_text(a), bb.encode_text(b), 32, "{a} ? {mask} , {b}")
             for a, b, _ in RTE_ROWS[:3]]
    batch = bb.collate(feats)
    ids = batch["input_ids"]
    rows = torch.arange(3)
    assert (ids[rows, batch["mask_index"]] == bb.tokenizer.sop_token_id).all()
    out = bb.model(ids, batch["position_ids"], batch["sep"], prefix=model.deep_prompt(3),
                   return_logits=True)
    expected = out.logits[rows, batch["mask_index"]][:, [3363, 1400]]  # " Yes", " No"
    torch.testing.assert_close(model(batch), expected)


@pytest.mark.parametrize("method", ["ptv2", "prompt", "finetune"])
def test_glm_methods_get_gradient_only_where_they_should(tiny_glm_dir, method):
    bb = load_backbone(tiny_glm_dir)
    model = PromptedModel(bb, PromptSettings(method=method, prefix_len=3), 2)
    feats = [bb.encode(bb.encode_text(a), bb.encode_text(b), 32) for a, b, _ in RTE_ROWS[:4]]
    F.cross_entropy(model(bb.collate(feats)), torch.tensor([0, 1, 0, 1])).backward()
    backbone_grads = [p.grad for p in bb.parameters()]
    if method == "finetune":
        assert all(g is not None for g in backbone_grads)
    else:
        assert all(g is None for g in backbone_grads)
    assert all(p.grad is not None for p in model.trainable_parameters())


@pytest.mark.parametrize("head", ["linear", "verbalizer"])
def test_cli_contract_on_tiny_glm(tiny_glm_dir, rte_tiny, tmp_path, capsys, head):
    out = tmp_path / "run"
    code = main(["train", "--model", tiny_glm_dir, "--task", "rte", "--head", head,
                 "--train-file", rte_tiny["train"], "--validation-file", rte_tiny["dev"],
                 "--output-dir", str(out), "--max-steps", "4", "--eval-every", "2",
                 "--batch-size", "4", "--max-seq-len", "48", "--prefix-len", "4"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "rte" and metrics["final"]["step"] == 4
    capsys.readouterr()
    assert main(["eval", "--artifact", str(out / "artifact"), "--data", rte_tiny["dev"]]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["accuracy"] == pytest.approx(metrics["best"]["accuracy"])
    meta = json.loads((out / "artifact" / "ptv2_artifact.json").read_text())
    assert meta["backbone"]["kind"] == "glm"
