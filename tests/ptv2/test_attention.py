"""The prefix attention against a naive reference, and inside real HF encoders."""
import math

import pytest
import torch

from ptv2_ds.backbones import HFEncoder
from ptv2_ds.backbones.attention import prefix_sdpa_attention
from ptv2_ds.prompts import DeepPrompt


class _Module:
    ptv2_layer = 0


def naive(q, k, v, mask):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)


def test_prefix_attention_matches_naive_reference():
    torch.manual_seed(0)
    B, H, S, P, D = 2, 3, 5, 4, 8
    q, k, v = (torch.randn(B, H, S, D) for _ in range(3))
    pk, pv = torch.randn(B, H, P, D), torch.randn(B, H, P, D)
    real_mask = torch.ones(B, 1, S, S, dtype=torch.bool)
    real_mask[1, :, :, 3:] = False  # example 1 has 3 real tokens
    prefix_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0]])
    out, _ = prefix_sdpa_attention(_Module(), q, k, v, real_mask, ptv2_prefix=[(pk, pv)],
                                   ptv2_prefix_mask=prefix_mask)
    full_mask = torch.cat([prefix_mask.bool()[:, None, None, :].expand(B, 1, S, P), real_mask], -1)
    ref = naive(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), full_mask)
    torch.testing.assert_close(out, ref)


def test_float_additive_mask_is_widened_too():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, 4) for _ in range(3))
    pk, pv = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
    additive = torch.zeros(1, 1, 3, 3)
    additive[..., 2] = torch.finfo(torch.float32).min
    out, _ = prefix_sdpa_attention(_Module(), q, k, v, additive, ptv2_prefix=[(pk, pv)])
    bool_mask = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    bool_mask[..., 2] = False
    ref, _ = prefix_sdpa_attention(_Module(), q, k, v, bool_mask, ptv2_prefix=[(pk, pv)])
    torch.testing.assert_close(out, ref)


@pytest.fixture(params=["bert", "roberta"])
def encoder(request, tiny_bert_dir, tiny_roberta_dir):
    path = tiny_bert_dir if request.param == "bert" else tiny_roberta_dir
    return HFEncoder(path).eval()


def _batch(encoder, texts=("the movie was great", "bad plot")):
    feats = [encoder.encode(encoder.encode_text(t), None, 32) for t in texts]
    return encoder.collate(feats)


def test_all_masked_prefix_equals_no_prefix(encoder):
    torch.manual_seed(0)
    batch = _batch(encoder)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=6, layers=(0, 1, 2)).eval()
    base = encoder(batch)
    hidden = encoder(batch, prefix=prompt(2), prefix_mask=torch.zeros(2, 6))
    # equal up to float rounding: the softmax sums run over P + S columns instead of S
    assert torch.equal(hidden, base) or torch.allclose(hidden, base, atol=1e-5, rtol=0)
    # and a visible prefix does change the output
    assert not torch.allclose(encoder(batch, prefix=prompt(2)), base, atol=1e-4)


def test_zero_length_prefix_equals_no_prefix(encoder):
    batch = _batch(encoder)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=0, layers=(0, 1, 2)).eval()
    torch.testing.assert_close(encoder(batch, prefix=prompt(2)), encoder(batch),
                               atol=1e-6, rtol=0)


def _layer_outputs(encoder, batch, prefix):
    outputs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o[0] if isinstance(
        o, tuple) else o)) for layer in encoder.encoder.encoder.layer]
    inputs = []
    hooks.append(encoder.encoder.encoder.layer[0].register_forward_pre_hook(
        lambda m, a, kw: inputs.append(a[0] if a else kw["hidden_states"]), with_kwargs=True))
    encoder(batch, prefix=prefix)
    for h in hooks:
        h.remove()
    return inputs[0], outputs


def test_layers_outside_selection_see_no_prefix(encoder):
    """Prefix only in layer 2: layers 0 and 1 compute exactly what they compute without one;
    the embeddings (and so the positions) of the real tokens do not move."""
    torch.manual_seed(0)
    batch = _batch(encoder)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=5, layers=(2,)).eval()
    emb_plain, plain = _layer_outputs(encoder, batch, None)
    emb_prefix, with_prefix = _layer_outputs(encoder, batch, prompt(2))
    assert torch.equal(emb_plain, emb_prefix)
    assert torch.allclose(plain[0], with_prefix[0], atol=1e-6)
    assert torch.allclose(plain[1], with_prefix[1], atol=1e-6)
    assert not torch.allclose(plain[2], with_prefix[2], atol=1e-4)


def test_gradient_checkpointing_gives_same_prefix_grads(tiny_bert_dir):
    torch.manual_seed(0)
    grads = []
    for checkpointing in (False, True):
        enc = HFEncoder(tiny_bert_dir, gradient_checkpointing=checkpointing)
        enc.requires_grad_(False)
        enc.train()  # checkpointing is active in training mode; the tiny config has no dropout
        torch.manual_seed(1)
        prompt = DeepPrompt(enc.prefix_shape, prefix_len=3, layers=(0, 1, 2), dropout=0.0)
        batch = _batch(enc)
        enc(batch, prefix=prompt(2)).pow(2).mean().backward()
        grads.append(prompt.table.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])
