"""The three methods on one model class: what trains, what is frozen, what is exported."""
import pytest
import torch
import torch.nn.functional as F

from ptv2_ds.backbones import HFEncoder
from ptv2_ds.model import PromptedModel, PromptSettings
from ptv2_ds.trainer.distributed import ensure_dist_env
from ptv2_ds.trainer.ds_config import fill_ds_config, load_ds_config
from tests.conftest import REPO

TEXTS = ["the movie was great fun", "the plot was bad and boring", "good actors",
         "a terrible film", "great story of love", "boring"]
LABELS = torch.tensor([1, 0, 1, 0, 1, 0])


def make(path, method, head="linear", **kw):
    torch.manual_seed(0)
    backbone = HFEncoder(path, with_lm_head=head == "verbalizer")
    settings = PromptSettings(method=method, prefix_len=4, **kw)
    return PromptedModel(backbone, settings, 2, head=head,
                         verbalizer=["bad", "great"] if head == "verbalizer" else None)


def batch_for(model, template=None):
    b = model.backbone
    feats = [b.encode(b.encode_text(t), None, 32, template) for t in TEXTS]
    batch = b.collate(feats)
    batch["labels"] = LABELS
    return batch


@pytest.mark.parametrize("method", ["ptv2", "prompt"])
def test_frozen_backbone_gets_no_gradient(tiny_bert_dir, method):
    model = make(tiny_bert_dir, method)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    F.cross_entropy(model(batch_for(model)), LABELS).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    trainable = model.trainable_parameters()
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


def test_input_prompt_positions_are_reserved_once(tiny_bert_dir):
    backbone = HFEncoder(tiny_bert_dir)
    limit = backbone.max_positions
    for _ in range(2):  # building twice on one backbone must not reserve twice
        PromptedModel(backbone, PromptSettings(method="prompt", prefix_len=4), 2)
        assert backbone.max_positions == limit - 4
    PromptedModel(backbone, PromptSettings(method="ptv2", prefix_len=4), 2)
    assert backbone.max_positions == limit  # deep prompts take no sequence positions


def test_parameter_counts(tiny_bert_dir):
    model = make(tiny_bert_dir, "ptv2", prefix_layers="1-2")
    counts = model.parameter_counts()
    H = 32
    assert counts["trainable_params"] == 4 * 2 * 2 * H + (H * 2 + 2)  # table + linear head
    assert counts["backbone_params"] == sum(p.numel() for p in model.backbone.parameters())
    assert counts["trainable_ratio"] == counts["trainable_params"] / counts["backbone_params"]
    full = make(tiny_bert_dir, "finetune").parameter_counts()
    assert full["trainable_params"] == full["backbone_params"] + H * 2 + 2


def _engine(model):
    import deepspeed

    ensure_dist_env()
    config = fill_ds_config(load_ds_config(str(REPO / "ds_configs" / "cpu.json")),
                            micro_batch=6, grad_accum=1, world_size=1, lr=1e-2,
                            weight_decay=0.0, precision="fp32", tb_dir=None)
    trainable = model.trainable_parameters()
    engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable,
                                      optimizer=torch.optim.AdamW(trainable, lr=1e-2),
                                      config=config)
    return engine


@pytest.mark.parametrize("method,head,kw", [
    ("ptv2", "linear", {"reparam": "embedding"}),
    ("ptv2", "linear", {"reparam": "mlp", "prefix_hidden": 16}),
    ("ptv2", "verbalizer", {}),
    ("ptv2", "mean", {}),
    ("prompt", "linear", {"prompt_encoder": "none"}),
    ("prompt", "mean", {"prompt_encoder": "none"}),
    ("prompt", "linear", {"prompt_encoder": "lstm"}),
    ("finetune", "linear", {}),
])
def test_each_method_lowers_the_loss_on_the_deepspeed_engine(tiny_bert_dir, method, head, kw):
    model = make(tiny_bert_dir, method, head, **kw)
    engine = _engine(model)
    optimized = {id(p) for group in engine.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.trainable_parameters()}
    if method != "finetune":
        assert not optimized & {id(p) for p in model.backbone.parameters()}
    batch = batch_for(model, "{a} It was {mask} ." if head == "verbalizer" else None)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(engine(batch), batch["labels"])
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0] * 0.7, losses


def test_mean_head_averages_the_real_tokens_only():
    from ptv2_ds.heads import build_head
    head = build_head("mean", 6, 3, dropout=0.0)
    hidden = torch.randn(2, 4, 6)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    scores = head(hidden, {"attention_mask": mask}, None)
    want = torch.stack([hidden[0].mean(0), hidden[1, :2].mean(0)])
    torch.testing.assert_close(scores, head.classifier(want))
    # padding states do not leak in
    hidden[1, 2:] = 1e6
    torch.testing.assert_close(head(hidden, {"attention_mask": mask}, None), scores)


def test_mean_head_is_a_classification_head_only():
    from ptv2_ds.errors import UserError
    from ptv2_ds.tasks import build_task
    assert build_task("sst2", head="mean").head_kind("mean") == "mean"
    with pytest.raises(UserError, match="does not apply to task conll04"):
        build_task("conll04").head_kind("mean")


@pytest.mark.parametrize("method,kw", [("ptv2", {"reparam": "mlp", "prefix_hidden": 16}),
                                       ("prompt", {"prompt_encoder": "mlp"})])
def test_collapsed_export_reproduces_logits(tiny_bert_dir, method, kw):
    model = make(tiny_bert_dir, method, **kw)
    with torch.no_grad():  # move away from the initialisation so the check is not trivial
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    batch = batch_for(model)
    expected = model(batch)
    state = model.artifact_state()
    assert not any("mlp" in k or "lstm" in k for k in state)
    fresh = make(tiny_bert_dir, method, **{**kw, "reparam": "embedding"} if method == "ptv2"
                 else {"prompt_encoder": "none"})
    fresh.load_artifact_state(state)
    fresh.eval()
    torch.testing.assert_close(fresh(batch), expected, atol=1e-5, rtol=1e-5)


def test_artifact_state_rejects_wrong_shapes(tiny_bert_dir):
    model = make(tiny_bert_dir, "ptv2")
    state = model.artifact_state()
    state["deep_prompt.table"] = state["deep_prompt.table"][:2]
    with pytest.raises(ValueError, match="deep_prompt.table has shape"):
        make(tiny_bert_dir, "ptv2").load_artifact_state(state)


def test_verbalizer_scores_are_lm_logits_at_mask(tiny_bert_dir):
    model = make(tiny_bert_dir, "ptv2", head="verbalizer").eval()
    batch = batch_for(model, "{a} It was {mask} .")
    words = model.backbone.tokenizer.convert_tokens_to_ids(["bad", "great"])
    hidden = model.backbone(batch, prefix=model.deep_prompt(len(TEXTS)))
    rows = torch.arange(len(TEXTS))
    lm = model.backbone.lm_head(hidden)[rows, batch["mask_index"]][:, words]
    torch.testing.assert_close(model(batch), lm)


def test_multi_token_verbalizer_word_is_rejected(tiny_bert_dir):
    with pytest.raises(ValueError, match="verbalizer word 'supercalifragilistic'"):
        PromptedModel(HFEncoder(tiny_bert_dir, with_lm_head=True), PromptSettings(), 2,
                      head="verbalizer", verbalizer=["bad", "supercalifragilistic"])
