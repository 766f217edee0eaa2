import json
from pathlib import Path

from ptv2_ds.trainer.ds_config import load_ds_config

REPO = Path(__file__).resolve().parents[2]


def test_default_config_is_the_repositorys_cpu_json():
    assert load_ds_config(None) == json.loads((REPO / "ds_configs" / "cpu.json").read_text())
