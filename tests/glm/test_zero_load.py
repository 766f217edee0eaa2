"""ZeRO-3 layer-by-layer loading across 2 DeepSpeed ranks on CPU.

Launches `deepspeed --num_gpus 2 tests/glm/zero_load_worker.py` with DS_ACCELERATOR=cpu
(DeepSpeed's CPU accelerator, gloo backend). On CPU the launcher needs nothing else: it
spawns 2 local processes ("--num_gpus" is the number of local ranks), core binding is off
unless `--bind_cores_to_rank` is given, and no hostfile/SSH is involved. The first launch on a
machine JIT-compiles DeepSpeed's shared-memory comm op (`deepspeed_shm_comm`, cached under
~/.cache/torch_extensions; needs a C++ compiler) which adds ~30 s once.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from glm.checkpoint import split_model_parallel
from glm.config import GLMConfig
from glm.model import GLMModel

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "zero_load_worker.py")
TIMEOUT_S = 240  # generous: includes a possible first-time JIT build of the shm comm op


def _tiny_config() -> GLMConfig:
    return GLMConfig(vocab_size=64, hidden_size=32, num_layers=2, num_attention_heads=4,
                     max_position_embeddings=16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deepspeed_launcher() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "deepspeed")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("deepspeed")
    if found:
        return [found]
    raise AssertionError("the deepspeed launcher is not installed next to this Python "
                         "(it ships with the deepspeed package, a declared dependency)")


@pytest.mark.multirank
def test_zero3_layer_by_layer_load_two_ranks(tmp_path):
    cfg = _tiny_config()
    torch.manual_seed(0)
    model = GLMModel(cfg).eval()
    sd = model.state_dict()

    # A 2-way model-parallel THUDM release directory, so the ZeRO path also merges shards.
    ckpt = tmp_path / "ckpt"
    (ckpt / "release").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("release")
    for r in range(2):
        shard = {k: split_model_parallel(k, v, 2)[r] for k, v in sd.items()}
        torch.save({"module": shard}, ckpt / "release" / f"mp_rank_{r:02d}_model_states.pt")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    hub = tmp_path / "hub"
    hub.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(hub / "model.safetensors"))
    missing_key = "transformer.layers.1.post_attention_layernorm.bias"
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"module": {k: v for k, v in sd.items() if k != missing_key}},
               bad / "mp_rank_00_model_states.pt")
    fail_key = "transformer.layers.1.mlp.dense_4h_to_h.weight"

    b, s = 2, 8
    g = torch.Generator().manual_seed(1)
    inputs = {
        "input_ids": torch.randint(0, cfg.vocab_size, (b, s), generator=g),
        "position_ids": torch.stack([torch.arange(s).expand(b, s),
                                     torch.zeros(b, s, dtype=torch.long)], dim=1),
        "sep": torch.tensor([5, 8]),
    }
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        ref = model(inputs["input_ids"], inputs["position_ids"], inputs["sep"],
                    return_logits=True)

    out = tmp_path / "out"
    env = dict(os.environ, DS_ACCELERATOR="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    cmd = [*_deepspeed_launcher(), "--num_gpus", "2", "--master_port", str(_free_port()),
           WORKER, "--ckpt", str(ckpt), "--config", str(tmp_path / "config.json"),
           "--inputs", str(tmp_path / "inputs.pt"), "--out", str(out), "--hub-ckpt", str(hub),
           "--bad-ckpt", str(bad), "--inject-read-error", fail_key]
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"deepspeed launch timed out after {TIMEOUT_S}s:\n"
                    f"{(exc.stdout or '')[-4000:]}\n{(exc.stderr or '')[-4000:]}")
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"

    got = torch.load(out / "logits.pt", weights_only=True)
    torch.testing.assert_close(got["logits"], ref.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["last_hidden_state"], ref.last_hidden_state,
                               rtol=1e-5, atol=1e-5)

    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    total = sum(p.numel() for p in model.parameters())
    for rec in records:
        assert rec["world_size"] == 2
        assert rec["partitioned"]
        assert rec["full_numel"] == total
        assert rec["visible_numel"] == 0          # nothing left gathered after loading
        # Each rank holds about half (ZeRO pads every parameter to a multiple of the world size).
        assert abs(rec["local_numel"] - total / 2) <= len(list(model.parameters()))
        # A checkpoint that does not fit, and a read error on rank 0 in the middle of the
        # layer-by-layer load, raised on every rank (and nobody hung).
        assert missing_key in rec["errors"]["validation"]
        assert "failed on rank 0" in rec["errors"]["read"]
        if rec["rank"] == 0:
            assert fail_key in rec["errors"]["read"]
        assert rec["hub_equal"] is True  # safetensors partial reads == the release shards
        assert rec["first_rows_equal"] == {"16": True, "64": True}
        # Both ranks ran the forward and got the same logits.
        assert rec["logits_sum"] == pytest.approx(float(ref.logits.double().sum()), rel=1e-6)
    assert sum(rec["local_numel"] for rec in records) >= total
