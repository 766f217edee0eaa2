"""Filling DeepSpeed configs from the run's flags."""
import json

import pytest

from ptv2_ds.trainer.ds_config import fill_ds_config, load_ds_config, resolve_precision
from tests.conftest import REPO

CONFIGS = sorted((REPO / "ds_configs").glob("*.json"))


def fill(name, **kw):
    args = dict(micro_batch=4, grad_accum=2, world_size=8, lr=5e-3, weight_decay=0.01,
                precision="auto", tb_dir="/out/tb")
    args.update(kw)
    return fill_ds_config(load_ds_config(str(REPO / "ds_configs" / name)), **args)


def test_required_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"cpu.json", "cpu_zero3.json", "zero2_fp16.json", "zero3_fp16.json",
            "zero3_offload_fp16.json"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_auto_is_resolved(path):
    filled = fill(path.name)
    assert "auto" not in json.dumps(filled)
    assert filled["train_batch_size"] == 4 * 2 * 8
    assert filled["tensorboard"]["output_path"] == "/out/tb"


def test_precision_follows_the_flag_or_the_file():
    assert resolve_precision(load_ds_config(str(REPO / "ds_configs" / "cpu.json")), "auto") == "fp32"
    c = fill("zero3_fp16.json", precision="fp16")
    assert c["fp16"]["enabled"] is True and c["bf16"]["enabled"] is False
    assert (c["fp16"]["loss_scale"], c["fp16"]["loss_scale_window"], c["fp16"]["hysteresis"],
            c["fp16"]["min_loss_scale"]) == (0, 1000, 2, 1)  # GLM's settings
    c = fill("zero3_fp16.json", precision="bf16")
    assert c["bf16"]["enabled"] is True and c["fp16"]["enabled"] is False


def test_offload_config_gets_optimizer_values():
    c = fill("zero3_offload_fp16.json")
    assert c["optimizer"]["params"]["lr"] == 5e-3
    assert c["optimizer"]["params"]["weight_decay"] == 0.01


def test_quantize_frozen_only_with_zero3():
    assert fill("cpu_zero3.json", quantize_frozen=True)["zero_optimization"][
        "zero_quantized_nontrainable_weights"] is True
    with pytest.raises(ValueError, match="ZeRO stage 3"):
        fill("cpu.json", quantize_frozen=True)


def test_inconsistent_batch_is_an_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train_batch_size": 7, "train_micro_batch_size_per_gpu": 2}))
    with pytest.raises(ValueError, match="train_batch_size 7"):
        fill_ds_config(load_ds_config(str(bad)), micro_batch=2, grad_accum=1, world_size=1,
                       lr=1e-3, weight_decay=0, precision="fp32", tb_dir=None)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(SystemExit, match="DeepSpeed config not found"):
        load_ds_config(str(tmp_path / "nope.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1,\n "b": }')
    with pytest.raises(SystemExit, match=r"broken.json:2: not valid JSON"):
        load_ds_config(str(broken))
