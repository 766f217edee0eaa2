"""``benchmarks/step_time.py``: the table it prints and the FLOP counts it puts next to times."""
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import step_time  # noqa: E402


def test_step_time_reports_times_and_matrix_product_flops(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "times.json"
    argv = ["--model", tiny_bert_dir, "--batch-size", "2", "--seq-len", "8", "--prefix-len",
            "4", "--rounds", "1", "--steps", "1", "--threads", "1", "--json", str(out)]
    assert step_time.main(argv) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"finetune", "prompt", "ptv2"}
    assert rows["finetune"]["vs_finetune"] == 1.0 and rows["finetune"]["gflop_vs_finetune"] == 1.0
    # a frozen backbone computes no weight gradients: fewer products than fine-tuning
    assert rows["ptv2"]["gflop"] < rows["finetune"]["gflop"]
    assert rows["ptv2"]["gflop_vs_finetune"] == rows["ptv2"]["gflop"] / rows["finetune"]["gflop"]
    assert "GFLOP/s" in capsys.readouterr().out

    # fine-tuning's step is exactly three times its forward pass (forward, input gradient,
    # weight gradient of every product)
    step, _ = step_time.make_step("finetune", step_time.parse_args(argv))
    model, batch = _closure(step, "model"), _closure(step, "batch")
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model(batch)
    assert rows["finetune"]["gflop"] * 1e9 == pytest.approx(3 * forward.get_total_flops(),
                                                            rel=1e-12)


def _closure(fn, name: str):
    """A variable the step function closes over (its model, its batch)."""
    return fn.__closure__[fn.__code__.co_freevars.index(name)].cell_contents
