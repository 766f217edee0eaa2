"""Deep prompts in DeBERTa (v1) and DeBERTa-v2/v3 encoders (disentangled attention).

Tiny randomly initialised checkpoints, saved with the tiny BERT WordPiece tokenizer next to
them (no DeBERTa tokenizer files are available offline), loaded through ``HFEncoder``.
"""
import json
import math

import pytest
import torch

from ptv2_ds.backbones import HFEncoder
from ptv2_ds.prompts import DeepPrompt
from tests.conftest import minilm_dir

COMMON = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=128, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0, initializer_range=0.3, relative_attention=True,
              pos_att_type=["c2p", "p2c"])
VARIANTS = {
    # v1 with absolute positions in the input and token types
    "v1": ("deberta", dict(position_biased_input=True, type_vocab_size=2)),
    "v2": ("deberta-v2", dict(position_biased_input=False, type_vocab_size=0)),
    # what DeBERTa-v3 uses
    "v3": ("deberta-v2", dict(position_biased_input=False, type_vocab_size=0, share_att_key=True,
                              position_buckets=256, norm_rel_ebd="layer_norm")),
    # log-bucketed relative positions actually in play (|i - j| >= 2)
    "v3_log_buckets": ("deberta-v2", dict(position_biased_input=False, type_vocab_size=0,
                                          share_att_key=True, position_buckets=4,
                                          norm_rel_ebd="layer_norm")),
}
TEXTS = ("the movie was great fun and the actors were good", "bad plot")


def _tokenizer():
    from transformers import BertTokenizerFast
    return BertTokenizerFast.from_pretrained(minilm_dir())


def _config(kind, tok, **extra):
    from transformers import DebertaConfig, DebertaV2Config
    model_type, options = VARIANTS[kind]
    cls = DebertaConfig if model_type == "deberta" else DebertaV2Config
    return cls(vocab_size=tok.vocab_size, **COMMON, **options, **extra)


def _save(out, config, tok, masked_lm=True):
    from transformers import (AutoModel, AutoModelForMaskedLM)
    torch.manual_seed(0)
    model = (AutoModelForMaskedLM if masked_lm else AutoModel).from_config(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant_dir(request, tmp_path_factory):
    tok = _tokenizer()
    return request.param, _save(tmp_path_factory.mktemp(f"deberta_{request.param}"),
                                _config(request.param, tok), tok)


@pytest.fixture
def encoder(variant_dir):
    return HFEncoder(variant_dir[1]).eval()


def _batch(encoder, texts=TEXTS):
    feats = [encoder.encode(encoder.encode_text(t), None, 32) for t in texts]
    return encoder.collate(feats)


# ---- loading ----------------------------------------------------------------------------
def test_loads_through_hf_encoder(variant_dir):
    kind, path = variant_dir
    enc = HFEncoder(path)
    layer = enc.encoder.encoder.layer[1]
    assert type(layer).__name__.startswith("PrefixDeberta")
    assert layer.attention.self.ptv2_layer == 1
    assert enc.pretrained_pooler is None and enc.lm_head is None
    assert enc.max_positions == 128
    assert enc.uses_token_types == (kind == "v1")
    assert enc.prefix_shape.num_layers == 3 and enc.prefix_shape.head_dim == 8
    batch = _batch(enc)
    assert enc(batch).shape == (2, batch["input_ids"].shape[1], 32)
    # shallow prompts (inputs_embeds) work too
    out = enc(batch, input_prompt=torch.randn(2, 3, 32))
    assert out.shape == (2, batch["input_ids"].shape[1], 32)


@pytest.mark.parametrize("legacy", [True, False])
def test_masked_lm_head_matches_transformers(tmp_path, legacy):
    from transformers import AutoModelForMaskedLM
    tok = _tokenizer()
    path = _save(tmp_path, _config("v2", tok, legacy=legacy), tok)
    enc = HFEncoder(path, with_lm_head=True).eval()
    batch = _batch(enc)
    full = AutoModelForMaskedLM.from_pretrained(path).eval()
    ref = full(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(enc.lm_logits(enc(batch)), ref)
    # the embeddings are not registered twice (the non-legacy head multiplies with them)
    names = [n for n, _ in enc.named_parameters() if "word_embeddings" in n]
    assert names == ["encoder.embeddings.word_embeddings.weight"]


def test_masked_lm_head_flavour_follows_the_checkpoint(tmp_path):
    """A checkpoint with ``lm_predictions`` weights but ``legacy`` left at its default
    (as the original DeBERTa releases) gets its own head, not a random ``cls`` head."""
    tok = _tokenizer()
    path = _save(tmp_path, _config("v1", tok, legacy=False), tok)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("legacy")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    enc = HFEncoder(path, with_lm_head=True)
    assert type(enc.lm_head).__name__ == "DebertaMLMHead"


def test_checkpoint_without_lm_head_is_refused_for_verbalizer(tmp_path):
    tok = _tokenizer()
    path = _save(tmp_path, _config("v3", tok), tok, masked_lm=False)
    with pytest.raises(ValueError, match="masked-LM head"):
        HFEncoder(path, with_lm_head=True)


# ---- prefix semantics -------------------------------------------------------------------
def test_all_masked_prefix_equals_no_prefix(encoder):
    torch.manual_seed(0)
    batch = _batch(encoder)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=6, layers=(0, 1, 2)).eval()
    base = encoder(batch)
    hidden = encoder(batch, prefix=prompt(2), prefix_mask=torch.zeros(2, 6))
    # every position, padding included. Equal up to float32 summation order: the softmax sum
    # and the value product run over P + S columns (hidden ones contribute exact zeros) instead
    # of S, which moves the last bits (observed max |difference| ~2e-6 after 3 layers)
    torch.testing.assert_close(hidden, base, atol=1e-5, rtol=0)
    assert not torch.allclose(encoder(batch, prefix=prompt(2)), base, atol=1e-4)


def _captured_attention(encoder, batch, prefix, prefix_mask, layer=0):
    """Inputs and output of one self-attention module during an encoder forward."""
    attn = encoder.encoder.encoder.layer[layer].attention.self
    seen = {}

    def pre(module, args, kwargs):
        seen["hidden"], seen["mask"] = args[0], args[1]
        seen["relative_pos"] = kwargs.get("relative_pos")
        seen["rel_embeddings"] = kwargs.get("rel_embeddings")

    def post(module, args, kwargs, output):
        seen["output"] = output[0]

    hooks = [attn.register_forward_pre_hook(pre, with_kwargs=True),
             attn.register_forward_hook(post, with_kwargs=True)]
    with torch.no_grad():
        encoder(batch, prefix=prefix, prefix_mask=prefix_mask)
    for h in hooks:
        h.remove()
    return attn, seen


def _heads(x, H):
    """[..., N, H * d] -> [..., H, N, d]"""
    return x.view(*x.shape[:-1], H, -1).transpose(-3, -2)


def reference_attention(attn, model_type, hidden, mask, rel_embeddings, prefix=None,
                        prefix_mask=None):
    """The disentangled attention with a prefix, written out:
    score(i, prefix p) = q_i . K_p / s,
    score(i, j)        = q_i . k_j / s + q_i . Kr[d(i, j)] / s + k_j . Qr[d'(i, j)] / s,
    s = sqrt(head_dim * 3); softmax over all prefix + real columns; values cat(V, v)."""
    B, S, _ = hidden.shape
    H = attn.num_attention_heads
    i = torch.arange(S)[:, None]
    j = torch.arange(S)[None, :]
    if model_type == "deberta":
        qkv = attn.in_proj(hidden).view(B, S, H, -1).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)  # the model's per-head q|k|v layout
        q = q + attn.q_bias.view(H, 1, -1)
        v = v + attn.v_bias.view(H, 1, -1)
        span = min(S, attn.max_relative_positions)
        rel = rel_embeddings[attn.max_relative_positions - span:
                             attn.max_relative_positions + span]
        pos_key, pos_query = attn.pos_proj(rel), attn.pos_q_proj(rel)
        c2p_index = i - j + span
        p2c_index = -(j - i) + span
    else:
        from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position
        q, k, v = (_heads(proj(hidden), H) for proj in
                   (attn.query_proj, attn.key_proj, attn.value_proj))
        span = attn.pos_ebd_size
        rel = rel_embeddings[:2 * span]
        if attn.share_att_key:
            pos_key, pos_query = attn.key_proj(rel), attn.query_proj(rel)
        else:
            pos_key, pos_query = attn.pos_key_proj(rel), attn.pos_query_proj(rel)

        def bucket(r):
            if attn.position_buckets > 0:
                return make_log_bucket_position(r, attn.position_buckets,
                                                attn.max_relative_positions).long()
            return r
        c2p_index = bucket(i - j) + span
        p2c_index = -bucket(j - i) + span
    c2p_index = c2p_index.clamp(0, 2 * span - 1)
    p2c_index = p2c_index.clamp(0, 2 * span - 1)
    pos_key, pos_query = _heads(pos_key, H), _heads(pos_query, H)  # [H, 2 span, d]
    s = math.sqrt(q.shape[-1] * 3)
    c2c = q @ k.transpose(-1, -2) / s
    c2p = torch.einsum("bhid,hijd->bhij", q, pos_key[:, c2p_index]) / s
    p2c = torch.einsum("bhjd,hijd->bhij", k, pos_query[:, p2c_index]) / s
    scores = c2c + c2p + p2c
    visible = mask.bool().view(B, 1, S, S)
    if prefix is not None:
        pk, pv = prefix
        P = pk.shape[2]
        scores = torch.cat([q @ pk.transpose(-1, -2) / s, scores], dim=-1)
        cols = torch.ones(B, P, dtype=torch.bool) if prefix_mask is None else prefix_mask.bool()
        visible = torch.cat([cols[:, None, None, :].expand(B, 1, S, P), visible], dim=-1)
        v = torch.cat([pv, v], dim=2)
    probs = scores.masked_fill(~visible, float("-inf")).softmax(-1)
    return (probs @ v).transpose(1, 2).reshape(B, S, -1)


@pytest.mark.parametrize("layer", [0, 2])
def test_layer_output_matches_hand_written_reference(variant_dir, encoder, layer):
    model_type = VARIANTS[variant_dir[0]][0]
    torch.manual_seed(0)
    batch = _batch(encoder)
    real_rows = batch["attention_mask"].bool()
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=4, layers=(0, 1, 2)).eval()
    prefix = prompt(2)
    prefix_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0]])
    # without a prefix the reference reproduces the model's own attention ...
    attn, seen = _captured_attention(encoder, batch, None, None, layer)
    ref = reference_attention(attn, model_type, seen["hidden"], seen["mask"],
                              seen["rel_embeddings"])
    torch.testing.assert_close(seen["output"][real_rows], ref[real_rows], atol=1e-5, rtol=1e-5)
    # ... and with one it gives what the patched attention computes
    attn, seen = _captured_attention(encoder, batch, prefix, prefix_mask, layer)
    with torch.no_grad():
        ref = reference_attention(attn, model_type, seen["hidden"], seen["mask"],
                                  seen["rel_embeddings"], prefix[layer], prefix_mask)
    torch.testing.assert_close(seen["output"][real_rows], ref[real_rows], atol=1e-5, rtol=1e-5)


def _layer_outputs(encoder, batch, prefix, prefix_mask=None):
    outputs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o[0]))
             for layer in encoder.encoder.encoder.layer]
    with torch.no_grad():
        encoder(batch, prefix=prefix, prefix_mask=prefix_mask)
    for h in hooks:
        h.remove()
    return outputs


def test_prefix_of_one_layer_acts_only_there_and_only_when_visible(encoder):
    torch.manual_seed(0)
    batch = _batch(encoder)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=5, layers=(2,)).eval()
    plain = _layer_outputs(encoder, batch, None)
    visible = _layer_outputs(encoder, batch, prompt(2))
    hidden = _layer_outputs(encoder, batch, prompt(2), torch.zeros(2, 5))
    for index in (0, 1):
        torch.testing.assert_close(visible[index], plain[index], atol=1e-6, rtol=0)
    assert not torch.allclose(visible[2], plain[2], atol=1e-4)
    for index in range(3):  # (summation order only, see above)
        torch.testing.assert_close(hidden[index], plain[index], atol=1e-5, rtol=0)


def test_padded_row_equals_row_alone(encoder):
    torch.manual_seed(0)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=3, layers=(0, 1, 2)).eval()
    batch = _batch(encoder)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # row 1 padded
    prefix = prompt(2)
    together = encoder(batch, prefix=prefix, prefix_mask=torch.tensor([[1, 1, 1], [1, 0, 1]]))
    alone = encoder(_batch(encoder, TEXTS[1:]), prefix=prompt(1),
                    prefix_mask=torch.tensor([[1, 0, 1]]))
    n = alone.shape[1]
    torch.testing.assert_close(together[1, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_prefix_gradients_with_and_without_checkpointing(variant_dir):
    grads = []
    for checkpointing in (False, True):
        enc = HFEncoder(variant_dir[1], gradient_checkpointing=checkpointing)
        enc.requires_grad_(False)
        enc.train()  # checkpointing is active in training mode; the tiny config has no dropout
        calls = []
        attn = enc.encoder.encoder.layer[0].attention.self
        attn.register_forward_hook(lambda m, i, o: calls.append(m.ptv2_kv is not None))
        torch.manual_seed(1)
        prompt = DeepPrompt(enc.prefix_shape, prefix_len=3, layers=(0, 1, 2), dropout=0.0)
        batch = _batch(enc)
        enc(batch, prefix=prompt(2)).pow(2).mean().backward()
        # with checkpointing the layer is recomputed in the backward pass, prefix included
        assert calls == [True] * (2 if checkpointing else 1)
        assert all(layer.ptv2_pending is None for layer in enc.encoder.encoder.layer)
        assert attn.ptv2_kv is None
        grads.append(prompt.table.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_zero_length_prefix_equals_no_prefix(encoder):
    batch = _batch(encoder)
    prompt = DeepPrompt(encoder.prefix_shape, prefix_len=0, layers=(0, 1, 2)).eval()
    torch.testing.assert_close(encoder(batch, prefix=prompt(2)), encoder(batch),
                               atol=1e-5, rtol=0)


def test_patched_encoder_pickles_and_copies(variant_dir):
    import copy
    import pickle
    enc = HFEncoder(variant_dir[1]).eval()
    batch = _batch(enc)
    prompt = DeepPrompt(enc.prefix_shape, prefix_len=2, layers=(0, 1, 2)).eval()
    prefix = prompt(2)
    expected = enc(batch, prefix=prefix)
    for clone in (copy.deepcopy(enc.encoder), pickle.loads(pickle.dumps(enc.encoder))):
        out = clone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"] if enc.uses_token_types else None,
                    ptv2_prefix=prefix).last_hidden_state
        torch.testing.assert_close(out, expected)
