"""The cheap CPU dropout (ptv2_ds/dropout.py): the same distribution as PyTorch's dropout, the
same attention math, the same model outputs when dropout is off, and PyTorch's own draws on
request."""
import math

import pytest
import torch
import torch.nn.functional as F

from ptv2_ds import dropout as fd


@pytest.fixture(autouse=True)
def fast_mode():
    fd.set_cpu_dropout("fast")
    yield
    fd.set_cpu_dropout("fast")


def test_keep_mask_rate_and_scale():
    torch.manual_seed(0)
    n, p = 2_000_000, 0.1
    mask = fd.keep_mask((n,), p, scale=1 / (1 - p))
    values = torch.unique(mask).tolist()
    assert values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p)) and len(values) == 2
    dropped = (mask == 0).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(dropped - p) < 5 * sigma
    # odd sizes and other rates: every element decided, rate right
    for p in (0.02, 0.5, 0.9):
        m = fd.keep_mask((333_333,), p)
        assert abs((m == 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / 333_333)


def test_keep_mask_elements_are_independent():
    """Neighbours (including the two halves of one 64-bit draw) are uncorrelated, and the
    pattern does not repeat between calls."""
    torch.manual_seed(1)
    m = fd.keep_mask((1_000_000,), 0.3).double()
    z = (m - m.mean()) / m.std()
    bound = 5 / math.sqrt(len(z))
    for lag in (1, 2, 3, 64):
        assert abs((z[:-lag] * z[lag:]).mean().item()) < bound, lag
    halves = z.view(-1, 2)  # the two 32-bit words of each 64-bit draw
    assert abs((halves[:, 0] * halves[:, 1]).mean().item()) < 5 / math.sqrt(len(halves))
    assert not torch.equal(fd.keep_mask((1000,), 0.5), fd.keep_mask((1000,), 0.5))


def test_masks_follow_the_global_seed():
    """Seeded like PyTorch's own dropout, so checkpointed RNG state makes resume exact."""
    torch.manual_seed(7)
    a = fd.keep_mask((4, 5, 6), 0.25)
    torch.manual_seed(7)
    b = fd.keep_mask((4, 5, 6), 0.25)
    assert torch.equal(a, b)


def test_dropout_expectation_and_gradient():
    torch.manual_seed(2)
    x = torch.randn(400, 500, requires_grad=True)
    y = fd.dropout(x, 0.2, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.8)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.8)
    # E[y] = x: over many draws the mean converges to x
    torch.manual_seed(3)
    xs = torch.full((1000, 1000), 2.0)
    assert fd.dropout(xs, 0.2).mean().item() == pytest.approx(2.0, abs=0.01)


def test_dropout_off_paths_are_pytorch():
    x = torch.randn(10, 10)
    assert torch.equal(fd.dropout(x, 0.3, training=False), x)
    assert torch.equal(fd.dropout(x, 0.0), x)
    assert torch.equal(fd.dropout(x, 1.0), torch.zeros_like(x))
    fd.set_cpu_dropout("torch")
    torch.manual_seed(4)
    a = fd.dropout(x, 0.3)
    torch.manual_seed(4)
    assert torch.equal(a, F.dropout(x, 0.3, True))


def test_attention_equals_reference_with_the_same_mask():
    torch.manual_seed(5)
    B, h, S, K, d, p = 2, 3, 5, 7, 4, 0.25
    q = torch.randn(B, h, S, d, requires_grad=True)
    k = torch.randn(B, h, K, d, requires_grad=True)
    v = torch.randn(B, h, K, d, requires_grad=True)
    mask = torch.rand(B, 1, S, K) > 0.3
    mask[..., 0] = True
    torch.manual_seed(6)
    out = fd.attention(q, k, v, mask, p, None)
    torch.manual_seed(6)
    keep = fd.keep_mask((B, h, S, K), p)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    scores = scores.masked_fill(~mask, float("-inf"))
    ref = (torch.softmax(scores, -1) * keep / (1 - p)) @ v
    assert torch.allclose(out, ref, atol=1e-6)
    g_out = torch.autograd.grad(out.sum(), (q, k, v))
    g_ref = torch.autograd.grad(ref.sum(), (q, k, v))
    for a, b in zip(g_out, g_ref):
        assert torch.allclose(a, b, atol=1e-5)
    # additive float masks too; without dropout it is SDPA itself
    additive = torch.zeros(B, 1, S, K).masked_fill(~mask, torch.finfo(torch.float32).min)
    torch.manual_seed(6)
    assert torch.allclose(fd.attention(q, k, v, additive, p, None), ref, atol=1e-6)
    assert torch.equal(fd.attention(q, k, v, mask, 0.0, None),
                       F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_use_fast_dropout_keeps_modules_and_state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.4),
                                torch.nn.Sequential(torch.nn.Dropout(0.2)))
    keys = list(model.state_dict())
    assert fd.use_fast_dropout(model) == 2
    assert isinstance(model[1], fd.FastDropout) and model[1].p == 0.4
    assert model[2][0].p == 0.2 and list(model.state_dict()) == keys
    model.eval()
    x = torch.randn(2, 3)
    assert torch.equal(model(x), model[0](x))


def test_cpu_dropout_mode_is_checked():
    from ptv2_ds.errors import UserError
    with pytest.raises(UserError, match="--cpu-dropout"):
        fd.set_cpu_dropout("quick")


def _encoder_outputs(model_dir, attn, mode, seed=0, train=True, prefix=None):
    from transformers import AutoModel
    fd.set_cpu_dropout(mode)
    from ptv2_ds.backbones.hf import HFEncoder
    if attn == "ptv2":
        enc = HFEncoder(model_dir)
        enc.train(train)
        module = enc
    else:
        module = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa")
        module.train(train)
    torch.manual_seed(123)
    ids = torch.randint(5, 90, (3, 9))
    am = torch.ones(3, 9, dtype=torch.long)
    am[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": am, "token_type_ids": torch.zeros_like(ids)}
    torch.manual_seed(seed)
    if attn == "ptv2":
        return module(batch, prefix=prefix)
    return module(**batch).last_hidden_state


def test_torch_mode_reproduces_the_stock_encoder_bit_for_bit(dropout_bert_dir):
    """--cpu-dropout torch: the prefix attention and dropouts draw exactly what transformers'
    own SDPA encoder draws (training mode, dropout on)."""
    ours = _encoder_outputs(dropout_bert_dir, "ptv2", "torch")
    stock = _encoder_outputs(dropout_bert_dir, "sdpa", "torch")
    assert torch.equal(ours, stock)
    # fast mode draws other masks (same distribution)
    assert not torch.allclose(_encoder_outputs(dropout_bert_dir, "ptv2", "fast"), stock)


def test_fast_mode_changes_nothing_without_dropout(dropout_bert_dir):
    ours = _encoder_outputs(dropout_bert_dir, "ptv2", "fast", train=False)
    stock = _encoder_outputs(dropout_bert_dir, "sdpa", "fast", train=False)
    assert torch.allclose(ours, stock, atol=1e-6)


def test_widened_mask_built_once_per_forward(tiny_bert_dir, monkeypatch):
    from ptv2_ds.backbones import attention
    from ptv2_ds.backbones.hf import HFEncoder
    from ptv2_ds.prompts import DeepPrompt
    enc = HFEncoder(tiny_bert_dir).eval()
    shape = enc.prefix_shape
    assert shape.num_layers >= 2
    prompt = DeepPrompt(shape, 4, tuple(range(shape.num_layers))).eval()
    calls = []
    widen = attention._widen_mask
    monkeypatch.setattr(attention, "_widen_mask", lambda *a: calls.append(1) or widen(*a))
    ids = torch.randint(5, 90, (2, 6))
    am = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    out = enc({"input_ids": ids, "attention_mask": am}, prefix=prompt(2))
    assert len(calls) == 1 and out.shape[:2] == (2, 6)


def _forward(backbone, seed: int, prefix) -> torch.Tensor:
    torch.manual_seed(123)
    ids = torch.randint(5, 90, (2, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    torch.manual_seed(seed)
    return backbone(batch, prefix=prefix)


@pytest.mark.parametrize("mode", ["fast", "torch"])
def test_backbone_dropout_zero_makes_training_mode_deterministic(dropout_bert_dir, mode):
    """--backbone-dropout 0: every dropout of the encoder (embeddings, attention, hidden) is
    off, so a training-mode forward is the eval-mode forward; the prefix keeps its own."""
    from ptv2_ds.backbones.hf import HFEncoder
    from ptv2_ds.prompts import DeepPrompt
    fd.set_cpu_dropout(mode)
    enc = HFEncoder(dropout_bert_dir).train()
    prompt = DeepPrompt(enc.prefix_shape, 3, tuple(range(enc.prefix_shape.num_layers)),
                        dropout=0.0)
    prefix = prompt(2)
    assert not torch.allclose(_forward(enc, 0, prefix), _forward(enc, 1, prefix))  # on
    assert enc.set_dropout(0.0) == sum(isinstance(m, torch.nn.Dropout) for m in enc.modules())
    train_out = _forward(enc, 0, prefix)
    assert torch.equal(train_out, _forward(enc, 1, prefix))
    assert torch.allclose(train_out, _forward(enc.eval(), 0, prefix), atol=1e-6)


def test_glm_attention_dropout_follows_its_module(tiny_glm_dir):
    """GLM's fused attention reads p from its dropout module: setting the module's p (as
    Backbone.set_dropout does) turns attention dropout on and off."""
    from ptv2_ds.backbones.glm import GLMBackbone
    glm = GLMBackbone(tiny_glm_dir).train()  # the tiny GLM is made with every dropout 0
    ids = torch.randint(5, 900, (2, 7))
    batch = glm.collate([glm.encode(row.tolist(), None, 16) for row in ids])
    torch.manual_seed(0)
    reference = glm(batch)
    for layer in glm.model.transformer.layers:
        layer.attention.attention_dropout.p = 0.5  # attention only
    torch.manual_seed(0)
    assert not torch.allclose(glm(batch), reference)
    assert glm.set_dropout(0.0) > 0
    torch.manual_seed(1)
    assert torch.equal(glm(batch), reference)
