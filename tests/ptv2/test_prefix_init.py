"""--prefix-init: reading a backbone's own keys/values, and prompts started from them."""
import pytest
import torch

from ptv2_ds.backbones import HFEncoder
from ptv2_ds.errors import UserError
from ptv2_ds.prompts.init import (check_prefix_init, frequent_tokens, init_prompt_from,
                                  mean_key_values, sequence_key_values, vocab_tokens)
from tests.conftest import minilm_dir

TEXTS = ("the movie was great fun and the actors were good", "bad plot", "the story of love")


def _features(backbone, texts=TEXTS):
    return [backbone.encode(backbone.encode_text(t), None, 32) for t in texts]


def _deberta_dir(tmp_path, model_type):
    """A tiny DeBERTa without relative attention: its prefix scores are then plain q.k, so a
    prefix equal to the layer's own keys/values is a pure duplicate (see below)."""
    from transformers import AutoModel, BertTokenizerFast, DebertaConfig, DebertaV2Config

    tok = BertTokenizerFast.from_pretrained(minilm_dir())
    cls = DebertaConfig if model_type == "deberta" else DebertaV2Config
    config = cls(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=3,
                 num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                 initializer_range=0.3, relative_attention=False, pos_att_type=[],
                 position_biased_input=True, type_vocab_size=0)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.fixture(params=["bert", "roberta", "glm", "deberta", "deberta-v2"])
def backbone(request, tiny_bert_dir, tiny_roberta_dir, tiny_glm_dir, tmp_path):
    if request.param == "glm":
        from ptv2_ds.backbones.glm import GLMBackbone
        return GLMBackbone(tiny_glm_dir).eval()
    path = {"bert": tiny_bert_dir, "roberta": tiny_roberta_dir}.get(request.param)
    return HFEncoder(path or _deberta_dir(tmp_path, request.param)).eval()


def test_a_prefix_of_the_layers_own_keys_values_changes_nothing(backbone):
    """Attention over cat(K, K) / cat(V, V) equals attention over K / V (every score appears
    twice, so the softmax weights halve and the weighted sum is the same). So if each layer's
    captured keys/values are exactly what it uses, prefixing them (masked where the input is
    padding) leaves every real token's hidden state as it was, layer after layer. (Padding
    rows may differ: GLM lets them see the padding keys, whose duplicates are masked.)"""
    batch = backbone.collate(_features(backbone))
    plain = backbone(batch)
    captured = backbone.layer_key_values(batch)
    assert len(captured) == backbone.prefix_shape.num_layers
    s = backbone.prefix_shape
    B, S = batch["input_ids"].shape
    assert captured[0][0].shape == (B, s.num_heads, S, s.head_dim)
    with torch.no_grad():
        same = backbone(batch, prefix=captured, prefix_mask=batch["attention_mask"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(same[real], plain[real], atol=2e-5, rtol=1e-4)
    # keys and values swapped: the test can tell
    with torch.no_grad():
        swapped = backbone(batch, prefix=[(v, k) for k, v in captured],
                           prefix_mask=batch["attention_mask"])
    assert (swapped[real] - plain[real]).abs().max() > 1e-2


def test_vocab_tokens_are_distinct_ordinary_and_seeded(bert):
    tok = bert.tokenizer
    a, b = vocab_tokens(tok, 20, seed=1), vocab_tokens(tok, 20, seed=2)
    assert a == vocab_tokens(tok, 20, seed=1) and a != b
    assert len(set(a)) == 20
    for t in tok.convert_ids_to_tokens(a):
        assert not (t.startswith("[") and t.endswith("]")) and any(c.isalnum() for c in t)


def test_frequent_tokens_known_answer(bert):
    tok = bert.tokenizer
    ids = {w: tok.convert_tokens_to_ids(w) for w in ("the", "movie", "bad", ",", ".")}
    feats = [{"input_ids": [tok.cls_token_id, ids["the"], ids["movie"], ids[","], ids[","],
                            ids[","], tok.sep_token_id]},
             {"input_ids": [tok.cls_token_id, ids["the"], ids["bad"], ids["movie"], ids["."],
                            ids["the"], tok.sep_token_id]}]
    # [CLS]/[SEP] (2 each) and punctuation (3 commas) never count; ties go to the lower id
    assert frequent_tokens(tok, feats, 2) == [ids["the"], ids["movie"]]
    assert frequent_tokens(tok, feats, 3) == [ids["the"], ids["movie"], ids["bad"]]
    with pytest.raises(UserError, match="fewer than --prefix-len 4"):
        frequent_tokens(tok, feats, 4)


def test_mean_key_values_average_a_tokens_uses(bert):
    feats = _features(bert)
    the = bert.tokenizer.convert_tokens_to_ids("the")
    movie = bert.tokenizer.convert_tokens_to_ids("movie")
    per_layer = mean_key_values(bert, feats, [the, movie])
    reference = bert.layer_key_values(bert.collate(feats))
    ids = bert.collate(feats)["input_ids"]
    for layer, (k, v) in enumerate(per_layer):
        assert k.shape == (4, 2, 8)                     # [heads, P, head_dim]
        for slot, token in enumerate((the, movie)):
            where = ids == token                        # "the" three times in two inputs
            want_k = reference[layer][0].permute(0, 2, 1, 3)[where].mean(0)
            want_v = reference[layer][1].permute(0, 2, 1, 3)[where].mean(0)
            torch.testing.assert_close(k[:, slot], want_k, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(v[:, slot], want_v, atol=1e-6, rtol=1e-5)


def _model(backbone, method="ptv2", layers="all", prefix_len=3):
    from ptv2_ds.model import PromptedModel, PromptSettings
    settings = PromptSettings(method=method, prefix_len=prefix_len, reparam="embedding",
                              prefix_hidden=16, prefix_dropout=0.0, prefix_layers=layers,
                              prompt_encoder="none")
    return PromptedModel(backbone, settings, 2, head="linear").eval()


@pytest.mark.parametrize("layers", ["all", "1,2"])
def test_activations_init_puts_each_layers_keys_values_where_the_prefix_reads_them(
        bert, layers):
    model = _model(bert, layers=layers)
    feats = _features(bert)
    note = init_prompt_from(model, "activations", feats, seed=0)
    assert "the" in note and "--prefix-init activations" in note
    tokens = frequent_tokens(bert.tokenizer, feats, 3)
    want = mean_key_values(bert, feats, tokens)
    prefix = model.deep_prompt(2)
    for layer in range(3):
        if layers != "all" and layer == 0:
            assert prefix[layer] is None
            continue
        k, v = prefix[layer]                            # [B, heads, P, d]
        torch.testing.assert_close(k[1], want[layer][0])
        torch.testing.assert_close(v[0], want[layer][1])


def test_vocab_init_reads_the_tokens_as_one_sequence(bert):
    model = _model(bert)
    init_prompt_from(model, "vocab", [], seed=5)
    want = sequence_key_values(bert, vocab_tokens(bert.tokenizer, 3, seed=5))
    prefix = model.deep_prompt(1)
    for layer in range(3):
        torch.testing.assert_close(prefix[layer][0][0], want[layer][0])
        torch.testing.assert_close(prefix[layer][1][0], want[layer][1])


def test_input_prompt_init_takes_word_embeddings(bert):
    model = _model(bert, method="prompt")
    feats = _features(bert)
    init_prompt_from(model, "activations", feats, seed=0)
    rows = bert.input_embeddings().weight[frequent_tokens(bert.tokenizer, feats, 3)]
    torch.testing.assert_close(model.input_prompt.table, rows)


def test_random_init_leaves_the_model_as_built(bert):
    model = _model(bert)
    before = model.deep_prompt.table.clone()
    init_prompt_from(model, "random", _features(bert), seed=0)
    assert torch.equal(model.deep_prompt.table, before)


@pytest.mark.parametrize("args, message", [
    (("bogus", "ptv2", "embedding", "none", 0), "must be one of random, vocab, activations"),
    (("vocab", "finetune", "embedding", "none", 0), "has no prompt"),
    (("activations", "ptv2", "mlp", "none", 0), "--reparam embedding"),
    (("vocab", "prompt", "embedding", "lstm", 0), "--prompt-encoder none"),
    (("activations", "ptv2", "embedding", "none", 3), "ZeRO stage 0-2"),
])
def test_refused_combinations(args, message):
    with pytest.raises(UserError, match=message):
        check_prefix_init(*args)
    check_prefix_init("random", *args[1:])  # the default never is


def test_prefix_init_with_init_prompt_is_refused():
    with pytest.raises(UserError, match="give one"):
        check_prefix_init("vocab", "ptv2", "embedding", "none", 0, init_prompt="a/artifact")


def test_train_with_activations_init(tmp_path, tiny_bert_dir, sst2_tiny, capsys):
    from ptv2_ds.cli.main import main
    out = tmp_path / "run"
    base = ["train", "--task", "sst2", "--model", tiny_bert_dir, "--train-file",
            sst2_tiny["train"], "--validation-file", sst2_tiny["dev"], "--max-steps", "4",
            "--batch-size", "8", "--prefix-len", "4", "--output-dir", str(out)]
    assert main(base + ["--prefix-init", "activations"]) == 0
    assert "prefix keys/values initialised from the backbone's own" in capsys.readouterr().out
    assert (out / "artifact" / "model.safetensors").is_file()
    # the init is part of the run's configuration: a rerun with another one is refused
    assert main(base + ["--prefix-init", "vocab", "--max-steps", "6"]) == 2
    assert "--prefix-init activations (checkpoint) vs vocab (now)" in capsys.readouterr().err
