"""Tests for glm.model.GLMModel on tiny CPU configs (big presets only on the meta device)."""
import math

import pytest
import torch

import glm.model as glm_model
from glm.config import GLMConfig
from glm.inputs import classification_input, sep_attention_mask
from glm.model import GLMModel, GLMOutput

V, H, NH, HD, MAXPOS = 64, 32, 4, 8, 32


def tiny_config(num_layers: int = 3, dropout: float = 0.0, **kw) -> GLMConfig:
    return GLMConfig(vocab_size=V, hidden_size=H, num_layers=num_layers, num_attention_heads=NH,
                     max_position_embeddings=MAXPOS, embedding_dropout=dropout,
                     attention_dropout=dropout, output_dropout=dropout, **kw)


def tiny_model(num_layers: int = 3, **kw) -> GLMModel:
    torch.manual_seed(0)
    return GLMModel(tiny_config(num_layers), **kw).eval()


def batch(b: int = 2, s: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (b, s), generator=g)
    pos = torch.stack([torch.arange(s).expand(b, s), torch.zeros(b, s, dtype=torch.long)], dim=1)
    sep = torch.tensor([s, 4])[:b]
    if b > 1:  # the second example has a part B (from 4) with block positions 1, 2, ...
        pos[1, 1, 4:] = torch.arange(1, s - 3)
    return ids, pos, sep


def make_prefix(num_layers: int, b: int = 2, p: int = 3, layers=None, seed: int = 2,
                requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(num_layers):
        if layers is not None and i not in layers:
            out.append(None)
            continue
        k = torch.randn(b, NH, p, HD, generator=g).requires_grad_(requires_grad)
        v = torch.randn(b, NH, p, HD, generator=g).requires_grad_(requires_grad)
        out.append((k, v))
    return out


def thudm_keys(num_layers: int) -> list[str]:
    keys = ["word_embeddings.weight", "transformer.position_embeddings.weight",
            "transformer.block_position_embeddings.weight"]
    for i in range(num_layers):
        for name in ["input_layernorm", "attention.query_key_value", "attention.dense",
                     "post_attention_layernorm", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"]:
            keys += [f"transformer.layers.{i}.{name}.weight", f"transformer.layers.{i}.{name}.bias"]
    keys += ["transformer.final_layernorm.weight", "transformer.final_layernorm.bias"]
    return keys


# -- structure ------------------------------------------------------------------------------

def test_state_dict_keys_are_thudm_keys():
    model = tiny_model(num_layers=2)
    sd = model.state_dict()
    assert sorted(sd) == sorted(thudm_keys(2))
    assert list(model.buffers()) == []
    assert sd["transformer.position_embeddings.weight"].shape == (MAXPOS + 1, H)
    assert sd["transformer.block_position_embeddings.weight"].shape == (MAXPOS + 1, H)
    assert sd["transformer.layers.0.attention.query_key_value.weight"].shape == (3 * H, H)
    assert sd["transformer.layers.0.mlp.dense_h_to_4h.weight"].shape == (4 * H, H)
    # a THUDM-style dict loads strictly into a fresh model
    other = GLMModel(tiny_config(num_layers=2))
    other.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)


def expected_count(cfg: GLMConfig) -> int:
    h, f = cfg.hidden_size, cfg.intermediate_size
    per_layer = 2 * 2 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * f + f) + (f * h + h)
    return (cfg.vocab_size * h + 2 * (cfg.max_position_embeddings + 1) * h
            + cfg.num_layers * per_layer + 2 * h)


@pytest.mark.parametrize("name,low,high", [
    ("glm-large", 330e6, 340e6),        # published: 335M
    ("glm-2b", 1.85e9, 2.0e9),
    ("glm-10b", 9.85e9, 10.1e9),        # 9.88B exactly; published as "10B"
    ("glm-10b-chinese", 9.85e9, 10.1e9),
])
def test_preset_parameter_counts_on_meta(name, low, high):
    cfg = GLMConfig.from_preset(name)
    with torch.device("meta"):
        model = GLMModel(cfg)
    n = model.num_parameters()
    assert n == sum(p.numel() for p in model.parameters()) == expected_count(cfg)
    assert low <= n <= high


def test_init_statistics():
    torch.manual_seed(0)
    cfg = GLMConfig(vocab_size=512, hidden_size=256, num_layers=8, num_attention_heads=4,
                    max_position_embeddings=64)
    model = GLMModel(cfg)
    layer = model.transformer.layers[0]
    assert model.word_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.attention.query_key_value.weight.std().item() == pytest.approx(0.02, rel=0.05)
    out_std = 0.02 / math.sqrt(2 * 8)
    assert layer.attention.dense.weight.std().item() == pytest.approx(out_std, rel=0.05)
    assert layer.mlp.dense_4h_to_h.weight.std().item() == pytest.approx(out_std, rel=0.05)
    assert torch.all(layer.attention.query_key_value.bias == 0)
    assert torch.all(layer.input_layernorm.weight == 1)
    assert torch.all(model.transformer.final_layernorm.bias == 0)


# -- forward basics -------------------------------------------------------------------------

def test_output_shapes_and_tied_logits():
    model = tiny_model()
    ids, pos, sep = batch()
    out = model(ids, pos, sep)
    assert isinstance(out, GLMOutput)
    assert out.last_hidden_state.shape == (2, 7, H) and out.logits is None
    out = model(ids, pos, sep, return_logits=True)
    assert out.logits.shape == (2, 7, V)
    torch.testing.assert_close(out.logits, out.last_hidden_state @ model.word_embeddings.weight.T)


def test_inputs_embeds_matches_input_ids():
    model = tiny_model()
    ids, pos, sep = batch()
    a = model(ids, pos, sep).last_hidden_state
    b = model(None, pos, sep, inputs_embeds=model.word_embeddings(ids)).last_hidden_state
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError):
        model(ids, pos, sep, inputs_embeds=model.word_embeddings(ids))


def test_sep_equals_explicit_sep_mask():
    model = tiny_model()
    ids, pos, sep = batch()
    a = model(ids, pos, sep).last_hidden_state
    b = model(ids, pos, sep_attention_mask(sep, 7).float()).last_hidden_state
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_position_channels_are_used():
    model = tiny_model()
    ids, pos, sep = batch()
    base = model(ids, pos, sep).last_hidden_state
    for ch in (0, 1):
        pos2 = pos.clone()
        pos2[0, ch, 2] += 1
        out = model(ids, pos2, sep).last_hidden_state
        assert not torch.allclose(out[0], base[0])
        torch.testing.assert_close(out[1], base[1], rtol=0, atol=0)


def test_part_b_is_causal_and_part_a_bidirectional():
    model = tiny_model()
    s, sep_val = 8, 3
    ids, pos, _ = batch(b=1, s=s)
    sep = torch.tensor([sep_val])
    base = model(ids, pos, sep).last_hidden_state
    later = ids.clone()
    later[0, 5] = (later[0, 5] + 1) % V          # a part-B token
    out = model(later, pos, sep).last_hidden_state
    torch.testing.assert_close(out[0, :5], base[0, :5], rtol=0, atol=0)
    assert not torch.allclose(out[0, 5:], base[0, 5:])
    part_a = ids.clone()
    part_a[0, 2] = (part_a[0, 2] + 1) % V        # the last part-A token
    out = model(part_a, pos, sep).last_hidden_state
    for i in range(s):
        assert not torch.allclose(out[0, i], base[0, i]), i


def test_classification_padding_does_not_change_real_outputs():
    model = tiny_model()
    enc = classification_input([5, 6, 7], [8, 9], cls_id=1, sep_id=2, eos_id=3, max_len=12,
                               pad_id=0)
    n = enc["sep"].item()
    ids, pos, sep = enc["input_ids"][None], enc["position_ids"][None], enc["sep"].view(1)
    base = model(ids, pos, sep).last_hidden_state
    junk = ids.clone()
    junk[0, n:] = torch.arange(n, 12) % V
    out = model(junk, pos, sep).last_hidden_state
    torch.testing.assert_close(out[0, :n], base[0, :n], rtol=0, atol=0)
    # and equal to running the unpadded sequence alone
    alone = model(ids[:, :n], pos[:, :, :n], sep).last_hidden_state
    torch.testing.assert_close(alone[0], base[0, :n], rtol=1e-5, atol=1e-6)


# -- sdpa vs explicit -----------------------------------------------------------------------

@pytest.mark.parametrize("with_prefix", [False, True])
def test_sdpa_matches_explicit_with_sep(with_prefix):
    model = tiny_model()
    ids, pos, sep = batch()
    prefix = make_prefix(3) if with_prefix else None
    prefix_mask = torch.tensor([[1, 1, 1], [1, 0, 1]]) if with_prefix else None
    model.attention_impl = "sdpa"
    a = model(ids, pos, sep, prefix=prefix, prefix_mask=prefix_mask, return_logits=True)
    model.attention_impl = "explicit"
    b = model(ids, pos, sep, prefix=prefix, prefix_mask=prefix_mask, return_logits=True)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_sdpa_matches_explicit_with_explicit_mask():
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(2, 1, 7, 7, generator=g) > 0.5
    mask[..., 0] = True                                    # every query sees key 0
    sdpa = tiny_model(attention_impl="sdpa")
    explicit = tiny_model(attention_impl="explicit")
    ids, pos, _ = batch()
    prefix = make_prefix(3, layers={0, 2})
    for pm in (None, torch.tensor([[1, 0, 1], [0, 0, 1]])):
        a = sdpa(ids, pos, mask, prefix=prefix, prefix_mask=pm).last_hidden_state
        b = explicit(ids, pos, mask.long(), prefix=prefix, prefix_mask=pm).last_hidden_state
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fully_masked_row_stays_finite():
    model = tiny_model()
    ids, pos, _ = batch()
    mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    mask[0, 0, 3] = False
    assert torch.isfinite(model(ids, pos, mask).last_hidden_state).all()
    # a row that sees no real key but does see the prefix is not "empty": it attends to the
    # prefix alone, identically in both implementations
    prefix = make_prefix(3)
    a = model(ids, pos, mask, prefix=prefix).last_hidden_state
    model.attention_impl = "explicit"
    b = model(ids, pos, mask, prefix=prefix).last_hidden_state
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_unknown_attention_impl():
    with pytest.raises(ValueError):
        GLMModel(tiny_config(), attention_impl="flash")


# -- prefixes -------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_empty_and_fully_masked_prefix_equal_no_prefix(impl):
    model = tiny_model(attention_impl=impl)
    ids, pos, sep = batch()
    base = model(ids, pos, sep).last_hidden_state
    empty = model(ids, pos, sep, prefix=make_prefix(3, p=0)).last_hidden_state
    torch.testing.assert_close(empty, base, rtol=0, atol=1e-6)
    hidden = model(ids, pos, sep, prefix=make_prefix(3, p=4),
                   prefix_mask=torch.zeros(2, 4, dtype=torch.long)).last_hidden_state
    torch.testing.assert_close(hidden, base, rtol=0, atol=1e-6)
    none_list = model(ids, pos, sep, prefix=[None, None, None]).last_hidden_state
    torch.testing.assert_close(none_list, base, rtol=0, atol=0)
    # a visible prefix does change the output
    seen = model(ids, pos, sep, prefix=make_prefix(3, p=4)).last_hidden_state
    assert not torch.allclose(seen, base)


def test_prefix_mask_is_per_example():
    model = tiny_model()
    ids, pos, sep = batch()
    base = model(ids, pos, sep).last_hidden_state
    out = model(ids, pos, sep, prefix=make_prefix(3),
                prefix_mask=torch.tensor([[0, 0, 0], [1, 1, 1]])).last_hidden_state
    torch.testing.assert_close(out[0], base[0], rtol=0, atol=1e-6)
    assert not torch.allclose(out[1], base[1])


def test_prefix_batch_of_one_broadcasts():
    model = tiny_model()
    ids, pos, sep = batch()
    one = make_prefix(3, b=1)
    two = [(k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1)) for k, v in one]
    a = model(ids, pos, sep, prefix=one).last_hidden_state
    b = model(ids, pos, sep, prefix=two).last_hidden_state
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_prefix_in_layer_1_only_leaves_layer_0_unchanged():
    model = tiny_model()
    ids, pos, sep = batch()
    seen = []
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
             for layer in model.transformer.layers]
    model(ids, pos, sep)
    model(ids, pos, sep, prefix=make_prefix(3, layers={1}))
    for h in hooks:
        h.remove()
    base, with_prefix = seen[:3], seen[3:]
    torch.testing.assert_close(with_prefix[0], base[0], rtol=0, atol=0)
    assert not torch.allclose(with_prefix[1], base[1])
    assert not torch.allclose(with_prefix[2], base[2])


def test_prefix_validation_errors():
    model = tiny_model()
    ids, pos, sep = batch()
    with pytest.raises(ValueError, match="one entry per layer"):
        model(ids, pos, sep, prefix=make_prefix(2))
    with pytest.raises(ValueError, match="prefix_mask"):
        model(ids, pos, sep, prefix=make_prefix(3), prefix_mask=torch.ones(2, 5))
    bad = make_prefix(3)
    bad[1] = (torch.zeros(2, NH, 3, HD + 1), torch.zeros(2, NH, 3, HD + 1))
    with pytest.raises(ValueError, match="prefix\\[1\\]"):
        model(ids, pos, sep, prefix=bad)
    mixed = make_prefix(3)
    mixed[2] = make_prefix(3, p=5)[2]
    with pytest.raises(ValueError, match="one length"):
        model(ids, pos, sep, prefix=mixed)
    with pytest.raises(ValueError, match="position_ids"):
        model(ids, pos[:, :1], sep)


# -- gradients and checkpointing ------------------------------------------------------------

def frozen_model(num_layers: int = 3, **cfg_kw) -> GLMModel:
    torch.manual_seed(0)
    model = GLMModel(tiny_config(num_layers, **cfg_kw))
    model.requires_grad_(False)
    return model


def test_gradients_reach_prefix_only():
    model = frozen_model().train()
    ids, pos, sep = batch()
    prefix = make_prefix(3, requires_grad=True)
    model(ids, pos, sep, prefix=prefix).last_hidden_state.square().mean().backward()
    for k, v in prefix:
        assert k.grad is not None and k.grad.abs().sum() > 0
        assert v.grad is not None and v.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def run_with_grads(model: GLMModel, seed: int = 2):
    ids, pos, sep = batch()
    prefix = make_prefix(3, requires_grad=True, seed=seed)
    out = model(ids, pos, sep, prefix=prefix, prefix_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]),
                return_logits=True)
    out.logits.float().logsumexp(-1).mean().backward()
    grads = [g for k, v in prefix for g in (k.grad, v.grad)]
    return out.last_hidden_state.detach(), grads


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_gradient_checkpointing_matches(impl, monkeypatch):
    calls = []
    real_checkpoint = glm_model.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(glm_model, "checkpoint", counting_checkpoint)

    plain = frozen_model().train()
    plain.attention_impl = impl
    out_a, grads_a = run_with_grads(plain)
    assert calls == []

    ckpt = frozen_model(gradient_checkpointing=True).train()
    ckpt.attention_impl = impl
    out_b, grads_b = run_with_grads(ckpt)
    assert calls == [False] * 3

    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    for ga, gb in zip(grads_a, grads_b):
        assert ga is not None and gb is not None
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in ckpt.parameters())

    # enable()/disable() switch it; eval mode never checkpoints
    calls.clear()
    plain.gradient_checkpointing_enable()
    run_with_grads(plain)
    assert len(calls) == 3
    calls.clear()
    plain.eval()
    run_with_grads(plain)
    plain.train().gradient_checkpointing_disable()
    run_with_grads(plain)
    assert calls == []


def test_checkpointing_with_dropout_runs_and_reaches_prefix():
    torch.manual_seed(0)
    model = GLMModel(tiny_config(dropout=0.1, gradient_checkpointing=True)).train()
    model.requires_grad_(False)
    _, grads = run_with_grads(model)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_full_finetune_gradients():
    torch.manual_seed(0)
    model = GLMModel(tiny_config()).train()
    ids, pos, sep = batch()
    model(ids, pos, sep, return_logits=True).logits.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


# -- independent reference ------------------------------------------------------------------

def reference_forward(sd: dict, cfg: GLMConfig, ids, pos, mask, prefix=None):
    """GLM written out from the state dict alone, one example and one head at a time."""
    import torch.nn.functional as F

    def ln(x, name):
        return F.layer_norm(x, (cfg.hidden_size,), sd[name + ".weight"], sd[name + ".bias"],
                            cfg.layernorm_epsilon)

    def lin(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    outs = []
    for b in range(ids.shape[0]):
        x = (sd["word_embeddings.weight"][ids[b]]
             + sd["transformer.position_embeddings.weight"][pos[b, 0]]
             + sd["transformer.block_position_embeddings.weight"][pos[b, 1]])
        for i in range(cfg.num_layers):
            pre = f"transformer.layers.{i}."
            qkv = lin(ln(x, pre + "input_layernorm"), pre + "attention.query_key_value")
            q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
            m = mask[b].float()
            heads = []
            for h in range(NH):
                sl = slice(h * HD, (h + 1) * HD)
                kh, vh, mh = k[:, sl], v[:, sl], m
                if prefix is not None and prefix[i] is not None:
                    kh = torch.cat([prefix[i][0][b, h], kh])
                    vh = torch.cat([prefix[i][1][b, h], vh])
                    mh = torch.cat([torch.ones(m.shape[0], kh.shape[0] - m.shape[1]), m], dim=1)
                scores = q[:, sl] @ kh.T / math.sqrt(HD)
                scores = scores * mh - 65504.0 * (1 - mh)
                heads.append(torch.softmax(scores, -1) @ vh)
            x = x + lin(torch.cat(heads, -1), pre + "attention.dense")
            y = lin(ln(x, pre + "post_attention_layernorm"), pre + "mlp.dense_h_to_4h")
            y = 0.5 * y * (1 + torch.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))
            x = x + lin(y, pre + "mlp.dense_4h_to_h")
        outs.append(ln(x, "transformer.final_layernorm"))
    return torch.stack(outs)


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_matches_independent_reference(impl):
    model = tiny_model(attention_impl=impl)
    # non-trivial LayerNorm/bias values so every term is exercised, and MLP inputs of O(1)
    # so the tanh-approximate GeLU is distinguishable from the exact one
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias") or "layernorm" in n:
                p.add_(0.1 * torch.randn_like(p))
            if "dense_h_to_4h.weight" in n or "query_key_value.weight" in n:
                p.mul_(20.0)
    ids, pos, sep = batch()
    prefix = make_prefix(3, layers={0, 2})
    got = model(ids, pos, sep, prefix=prefix).last_hidden_state
    want = reference_forward(model.state_dict(), model.config, ids, pos,
                             sep_attention_mask(sep, 7)[:, 0], prefix)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
