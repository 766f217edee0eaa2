"""``benchmarks/step_time.py``: the table it prints and the FLOP counts it puts next to times."""
import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import step_time  # noqa: E402

B, S, P = 2, 8, 4
ARGV = ["--batch-size", str(B), "--seq-len", str(S), "--prefix-len", str(P), "--steps", "1",
        "--threads", "1"]


def test_step_time_reports_times_and_matrix_product_flops(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "times.json"
    assert step_time.main(["--model", tiny_bert_dir, "--rounds", "1", "--json", str(out)]
                          + ARGV) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"finetune", "prompt", "ptv2"}
    assert rows["finetune"]["vs_finetune"] == 1.0 and rows["finetune"]["gflop_vs_finetune"] == 1.0
    assert rows["ptv2"]["gflop"] < rows["finetune"]["gflop"]
    assert rows["ptv2"]["gflop_vs_finetune"] == rows["ptv2"]["gflop"] / rows["finetune"]["gflop"]
    assert "GFLOP/s" in capsys.readouterr().out


def test_flop_counts_are_the_known_products(tiny_bert_dir):
    """Known answers for the tiny encoder: fine-tuning computes an input and a weight gradient
    for every linear layer, ptv2 no weight gradient of the backbone and no input gradient for
    the bottom layer's query/key/value (its input is the frozen embeddings)."""
    H, F, L, heads = (TINY[k] for k in ("hidden_size", "intermediate_size",
                                        "num_hidden_layers", "num_attention_heads"))
    linears = 2 * B * S * L * (4 * H * H + 2 * H * F)  # forward, every layer
    head = 2 * B * H * 2                                # the 2-class linear head
    args = step_time.parse_args(["--model", tiny_bert_dir] + ARGV)
    counts = {m: step_time.step_flops(step_time.make_step(m, args)[0])
              for m in ("finetune", "ptv2")}
    assert counts["finetune"]["addmm"] == counts["ptv2"]["addmm"] == linears + head
    assert counts["finetune"]["mm"] == 2 * (linears + head)
    assert counts["ptv2"]["mm"] == linears - 2 * B * S * 3 * H * H + 2 * head
    # attention (the tiny encoder has dropout 0: SDPA's fused kernel), P keys wider for ptv2
    fused = step_time.FUSED_ATTENTION[0]
    assert counts["finetune"][fused] == L * 2 * (2 * B * heads * S * S * (H // heads))
    assert counts["ptv2"][fused] == L * 2 * (2 * B * heads * S * (S + P) * (H // heads))


def test_profile_splits_each_step_into_matrix_products_and_the_rest(tiny_bert_dir, capsys):
    argv = ["--model", tiny_bert_dir, "--rounds", "2", "--profile",
            "--methods", "finetune,ptv2"] + ARGV
    assert step_time.main(argv) == 0
    out = capsys.readouterr().out
    blocks = re.split(r"\n(?=finetune|ptv2)", out)[1:]
    gflop = {}
    for block, method in zip(blocks, ("finetune", "ptv2")):
        head = block.splitlines()[0]
        assert head.startswith(method)
        total, products, other = (float(x) for x in re.findall(r"([\d.]+) s", head))
        assert total == pytest.approx(products + other, abs=2e-3)  # printed to 1 ms
        gflop[method] = sum(float(x) for x in re.findall(r"([\d.e+-]+) GFLOP ", block))
    assert 0 < gflop["ptv2"] < gflop["finetune"]
