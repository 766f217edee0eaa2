import pytest
import torch

from ptv2_ds.prompts import DeepPrompt, InputPrompt, PrefixShape, parse_prefix_layers


@pytest.mark.parametrize("spec,expected", [
    ("all", (0, 1, 2, 3, 4, 5)),
    ("2-4", (2, 3, 4)),
    ("0,5,3", (0, 3, 5)),
    ("last:2", (4, 5)),
    ("first:1", (0,)),
    ("0-1,4", (0, 1, 4)),
    ([1, 2], (1, 2)),
])
def test_parse_prefix_layers(spec, expected):
    assert parse_prefix_layers(spec, 6) == expected


@pytest.mark.parametrize("spec,needle", [
    ("17-24", "out of range"), ("last:7", "count"), ("4-2", "backwards"), ("a,b", "not a layer"),
    ("1,,2", "empty"),
])
def test_parse_prefix_layers_rejects(spec, needle):
    with pytest.raises(ValueError, match=needle):
        parse_prefix_layers(spec, 6)


SHAPE = PrefixShape(num_layers=4, num_heads=2, head_dim=3)


def test_deep_prompt_shapes_and_unselected_layers():
    prompt = DeepPrompt(SHAPE, prefix_len=5, layers=(1, 3), reparam="embedding")
    prefix = prompt.eval()(batch_size=2)
    assert prefix[0] is None and prefix[2] is None
    for layer in (1, 3):
        k, v = prefix[layer]
        assert k.shape == v.shape == (2, 2, 5, 3)
    # parameters cover only the selected layers: P x (n_sel * 2 * H)
    assert prompt.table.shape == (5, 2 * 2 * 6)


def test_deep_prompt_table_layout():
    """Slot s of the table holds layer s's keys then values, head-major."""
    prompt = DeepPrompt(SHAPE, prefix_len=1, layers=(0, 2), reparam="embedding").eval()
    with torch.no_grad():
        prompt.table.copy_(torch.arange(24.0).view(1, 24))
    prefix = prompt(batch_size=1)
    assert prefix[0][0].flatten().tolist() == list(range(0, 6))
    assert prefix[0][1].flatten().tolist() == list(range(6, 12))
    assert prefix[2][0].flatten().tolist() == list(range(12, 18))
    assert prefix[2][1].flatten().tolist() == list(range(18, 24))


def test_mlp_collapses_to_identical_embedding_form():
    torch.manual_seed(0)
    mlp = DeepPrompt(SHAPE, prefix_len=4, layers=(0, 1, 2, 3), reparam="mlp",
                     prefix_hidden=7).eval()
    table = mlp.to_embedding_form().eval()
    for a, b in zip(mlp(3), table(3)):
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])


@pytest.mark.parametrize("encoder", ["none", "mlp", "lstm"])
def test_input_prompt_collapse(encoder):
    torch.manual_seed(0)
    prompt = InputPrompt(hidden_size=8, prompt_len=3, encoder=encoder)
    out = prompt(batch_size=2)
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(prompt.to_embedding_form()(2), out)


def test_dropout_only_in_training():
    prompt = DeepPrompt(SHAPE, prefix_len=4, layers=(0,), dropout=0.5)
    prompt.train()
    k_train = prompt(8)[0][0]
    prompt.eval()
    k_eval = prompt(8)[0][0]
    assert (k_train == 0).any() and not (k_eval == 0).any()
