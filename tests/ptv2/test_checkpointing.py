"""Checkpoint save/resume (ptv2_ds.trainer.checkpointing) at the unit level: the run-config
check, the trainable-parameter check, per-rank RNG files, and the COMPLETE/latest protocol.

Most tests use a fake engine (no process group); the last ones use a real single-rank
DeepSpeed engine at ZeRO-0/2/3 to pin down what DeepSpeed writes and refuses."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ptv2_ds.config import TrainArgs
from ptv2_ds.trainer import checkpointing
from ptv2_ds.trainer import distributed as dist_env
from ptv2_ds.trainer.checkpointing import (IGNORABLE, RUN_CONFIG, config_differences,
                                           make_run_config)


class Model(nn.Module):
    def __init__(self, prefix_len: int = 2):
        super().__init__()
        self.backbone = nn.Linear(8, 8).requires_grad_(False)
        self.prompt = nn.Parameter(torch.randn(prefix_len, 8))
        self.head = nn.Linear(8, 2)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        return self.head(self.backbone(x) + self.prompt.sum(0)).sum() * self.scale


class FakeEngine:
    """What checkpointing needs of a DeepSpeed engine, writing DeepSpeed's ZeRO-0 layout: one
    ``mp_rank_00_model_states.pt`` with the trainable module state and the client state."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.loads = []

    def save_checkpoint(self, save_dir, tag, client_state, save_latest,
                        exclude_frozen_parameters):
        assert exclude_frozen_parameters and not save_latest
        d = Path(save_dir) / tag
        d.mkdir(parents=True, exist_ok=True)
        module = {n: t.clone() for n, t in self.module.state_dict().items()
                  if n not in {n for n, p in self.module.named_parameters() if not p.requires_grad}}
        torch.save({"module": module, "param_shapes": None, **client_state},
                   d / "mp_rank_00_model_states.pt")

    def load_checkpoint(self, load_dir, tag, load_module_strict):
        path = Path(load_dir) / tag
        states = torch.load(path / "mp_rank_00_model_states.pt", weights_only=False)
        self.module.load_state_dict(states.pop("module"), strict=load_module_strict)
        self.loads.append(tag)
        return str(path), states


def run_config(**changes) -> dict:
    args = TrainArgs(model="tiny", lr=0.005, output_dir="out", eval_every=6)
    cfg = make_run_config(args, world_size=2, zero_stage=2)
    cfg.update(changes)
    return cfg


def fresh_state(step: int = 0) -> dict:
    return {"step": step, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None,
            "history": []}


# ---- run configuration ---------------------------------------------------------------------

def test_run_config_holds_every_train_flag_plus_world_and_stage():
    cfg = run_config()
    assert {"lr", "reparam", "task", "model", "prefix_len", "seed", "batch_size"} <= set(cfg)
    assert cfg["world_size"] == 2 and cfg["zero_stage"] == 2
    assert json.loads(json.dumps(cfg)) == cfg
    # every ignorable key is a real TrainArgs field (no typo silently ignoring nothing)
    import dataclasses
    assert IGNORABLE <= {f.name for f in dataclasses.fields(TrainArgs)}


def test_different_lr_is_a_difference_with_both_values():
    lines = config_differences(run_config(), run_config(lr=0.01))
    assert lines == ["--lr 0.005 (checkpoint) vs 0.01 (now)"]


def test_cadence_length_and_output_settings_may_differ():
    same = run_config(eval_every=3, log_every=1, save_every=5, eval_batch_size=7,
                      save_total_limit=9, output_dir="elsewhere", resume="none",
                      max_steps=100, epochs=9.0, test_file="t.tsv", skip_bad_rows=True)
    assert config_differences(run_config(), same) == []


@pytest.mark.parametrize("key,value", [("reparam", "mlp"), ("task", "rte"), ("model", "other"),
                                       ("prefix_len", 8), ("seed", 1), ("world_size", 1),
                                       ("zero_stage", 3), ("batch_size", 4), ("grad_accum", 2),
                                       ("precision", "bf16"), ("max_seq_len", 96),
                                       ("train_file", "b.tsv"), ("weight_decay", 0.1)])
def test_settings_that_change_the_computation_must_match(key, value):
    lines = config_differences(run_config(), run_config(**{key: value}))
    assert len(lines) == 1 and "(checkpoint) vs" in lines[0]


# ---- save / resume with a fake engine --------------------------------------------------------

def test_save_writes_run_config_rng_and_marker(tmp_path):
    engine = FakeEngine(Model())
    tag = checkpointing.save(engine, tmp_path, fresh_state(2), keep=2, run_config=run_config())
    assert tag == tmp_path / "step2"
    assert (tag / "COMPLETE").is_file() and (tag / "rng_rank0.pt").is_file()
    assert json.loads((tag / RUN_CONFIG).read_text()) == run_config()
    assert (tmp_path / "latest").read_text() == "step2"


def test_resume_refuses_a_different_lr(tmp_path):
    engine = FakeEngine(Model())
    checkpointing.save(engine, tmp_path, fresh_state(4), keep=2, run_config=run_config())
    with pytest.raises(SystemExit) as info:
        checkpointing.resume(FakeEngine(Model()), tmp_path, "auto", fresh_state(),
                             run_config(lr=0.01))
    message = str(info.value.code)
    assert message.startswith("error: ")
    assert "--lr 0.005 (checkpoint) vs 0.01 (now)" in message
    assert "--resume none" in message and "--output-dir" in message
    # the explicit form is checked too
    with pytest.raises(SystemExit, match="--lr 0.005"):
        checkpointing.resume(FakeEngine(Model()), tmp_path, str(tmp_path / "step4"),
                             fresh_state(), run_config(lr=0.01))


def test_resume_allows_a_different_eval_cadence(tmp_path):
    engine = FakeEngine(Model())
    checkpointing.save(engine, tmp_path, fresh_state(4), keep=2, run_config=run_config())
    other = FakeEngine(Model())
    state = fresh_state()
    resumed = checkpointing.resume(other, tmp_path, "auto", state, run_config(eval_every=2))
    assert resumed == str(tmp_path / "step4") and other.loads == ["step4"]
    assert state["step"] == 4
    assert torch.equal(other.module.prompt, engine.module.prompt)


def test_resume_none_starts_fresh_without_checking(tmp_path):
    checkpointing.save(FakeEngine(Model()), tmp_path, fresh_state(4), 2, run_config())
    assert checkpointing.resume(FakeEngine(Model()), tmp_path, "none", fresh_state(),
                                run_config(lr=1.0)) is None


def test_checkpoint_without_run_config_is_refused(tmp_path):
    checkpointing.save(FakeEngine(Model()), tmp_path, fresh_state(4), 2, run_config())
    (tmp_path / "step4" / RUN_CONFIG).unlink()
    with pytest.raises(SystemExit, match="^error: .*no run_config.json.*--resume none"):
        checkpointing.resume(FakeEngine(Model()), tmp_path, "auto", fresh_state(), run_config())


def test_changed_prompt_shape_is_refused_even_with_a_matching_config(tmp_path):
    checkpointing.save(FakeEngine(Model(prefix_len=2)), tmp_path, fresh_state(4), 2,
                       run_config())
    with pytest.raises(SystemExit) as info:
        checkpointing.resume(FakeEngine(Model(prefix_len=3)), tmp_path, "auto", fresh_state(),
                             run_config())
    assert "prompt: shape [2, 8] (checkpoint) vs [3, 8] (now)" in str(info.value.code)


def test_missing_trainable_parameter_is_refused(tmp_path):
    checkpointing.save(FakeEngine(Model()), tmp_path, fresh_state(4), 2, run_config())
    model = Model()
    model.extra = nn.Parameter(torch.zeros(3))
    with pytest.raises(SystemExit, match="extra: missing from the checkpoint"):
        checkpointing.resume(FakeEngine(model), tmp_path, "auto", fresh_state(), run_config())
    frozen_head = Model()
    frozen_head.head.requires_grad_(False)
    with pytest.raises(SystemExit, match="head.weight: in the checkpoint but not trained now"):
        checkpointing.resume(FakeEngine(frozen_head), tmp_path, "auto", fresh_state(),
                             run_config())


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _draw() -> tuple:
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_each_rank_saves_and_restores_its_own_rng(tmp_path, monkeypatch):
    """Two ranks in one process (the rank is patched): each writes rng_rank<r>.pt, and a
    resuming rank 1 continues rank 1's streams, not rank 0's."""
    engine = FakeEngine(Model())
    expected = {}
    for rank in (1, 0):  # rank 0 last: it writes COMPLETE and latest
        monkeypatch.setattr(dist_env, "rank", lambda r=rank: r)
        _seed_all(100 + rank)
        checkpointing.save(engine, tmp_path, fresh_state(6), 2, run_config())
        expected[rank] = _draw()
    assert {p.name for p in (tmp_path / "step6").glob("rng_rank*.pt")} == \
        {"rng_rank0.pt", "rng_rank1.pt"}
    assert expected[0] != expected[1]
    for rank in (1, 0):
        monkeypatch.setattr(dist_env, "rank", lambda r=rank: r)
        _seed_all(999)
        checkpointing.resume(FakeEngine(Model()), tmp_path, "auto", fresh_state(), run_config())
        assert _draw() == expected[rank], rank


def test_rng_files_load_weights_only(tmp_path):
    path = checkpointing.save_rng(tmp_path, 3)
    state = torch.load(path, weights_only=True)
    assert set(state) >= {"python", "numpy", "torch"}


def test_save_prunes_old_and_abandoned_tags(tmp_path):
    engine = FakeEngine(Model())
    for step in (10, 12):   # an earlier run that went further
        checkpointing.save(engine, tmp_path, fresh_state(step), 2, run_config())
    checkpointing.save(engine, tmp_path, fresh_state(2), 2, run_config())  # --resume none
    assert checkpointing.complete_tags(tmp_path) == ["step2"]
    for step in (4, 6):
        checkpointing.save(engine, tmp_path, fresh_state(step), 2, run_config())
    assert checkpointing.complete_tags(tmp_path) == ["step4", "step6"]
    assert checkpointing.find_resume_tag(tmp_path) == "step6"


def test_incomplete_latest_falls_back_to_newest_complete(tmp_path):
    engine = FakeEngine(Model())
    for step in (2, 4):
        checkpointing.save(engine, tmp_path, fresh_state(step), 3, run_config())
    (tmp_path / "step4" / "COMPLETE").unlink()   # a crash between the files and the marker
    assert checkpointing.find_resume_tag(tmp_path) == "step2"


# ---- a real DeepSpeed engine (one rank) ------------------------------------------------------

@pytest.fixture(autouse=True)
def keep_torch_functions():
    """A ZeRO-3 engine replaces torch.nn.functional.linear process-wide (and never puts it
    back); later tests in this process must see the original."""
    import torch.nn.functional as F

    saved = {name: getattr(F, name) for name in dir(F) if not name.startswith("__")}
    yield
    for name, value in saved.items():
        if getattr(F, name) is not value:
            setattr(F, name, value)


@pytest.fixture(scope="module")
def process_group():
    dist_env.ensure_dist_env()
    import deepspeed

    deepspeed.init_distributed()
    yield
    dist_env.shutdown()


def real_engine(stage: int, prefix_len: int = 2):
    import deepspeed

    torch.manual_seed(0)
    model = Model(prefix_len)
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=trainable,
        optimizer=torch.optim.AdamW(trainable, lr=0.1),
        config={"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage},
                "steps_per_print": 10 ** 9})
    return engine


def _step(engine) -> None:
    loss = engine(torch.ones(1, 8))
    engine.backward(loss)
    engine.step()


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_real_engine_round_trip_and_refusals(stage, tmp_path, process_group):
    import deepspeed

    engine = real_engine(stage)
    _step(engine)
    checkpointing.save(engine, tmp_path, fresh_state(1), 2, run_config(zero_stage=stage))
    # DeepSpeed's strict module loading cannot be used: the frozen weights are not saved
    with pytest.raises(RuntimeError, match="Missing key.*backbone.weight"):
        engine.load_checkpoint(str(tmp_path), tag="step1", load_module_strict=True)
    with deepspeed.zero.GatheredParameters([engine.module.prompt], enabled=stage == 3):
        saved_prompt = engine.module.prompt.detach().clone()
    _step(engine)

    other = real_engine(stage)
    state = fresh_state()
    assert checkpointing.resume(other, tmp_path, "auto", state,
                                run_config(zero_stage=stage, eval_every=1))
    assert state["step"] == 1 and other.global_steps == 1
    with deepspeed.zero.GatheredParameters([other.module.prompt], enabled=stage == 3):
        torch.testing.assert_close(other.module.prompt.detach(), saved_prompt)

    with pytest.raises(SystemExit, match="prompt: shape \\[2, 8\\] .* vs \\[4, 8\\]"):
        checkpointing.resume(real_engine(stage, prefix_len=4), tmp_path, "auto", fresh_state(),
                             run_config(zero_stage=stage))
    with pytest.raises(SystemExit, match="ZeRO stage"):
        checkpointing.resume(other, tmp_path, "auto", fresh_state(),
                             run_config(zero_stage=(stage + 1) % 4))


# ---- process-group tear-down (one rank; the two-rank cases are in test_distributed.py) ------

def test_shutdown_is_idempotent_and_the_next_run_gets_fresh_groups(process_group, monkeypatch):
    """The CLI shuts the process group down after every command; in-process callers (tests)
    then start the next run in the same process: DeepSpeed must not hand it a stale group."""
    import deepspeed

    _step(real_engine(0))          # DeepSpeed now caches its world-group clone
    assert dist_env.shutdown() is True
    assert not torch.distributed.is_initialized()
    assert dist_env.shutdown() is False
    deepspeed.init_distributed()
    _step(real_engine(2))          # would fail with "Group ... is not registered"

    def boom(*a, **k):
        raise RuntimeError("tear-down failed")

    monkeypatch.setattr(torch.distributed, "destroy_process_group", boom)
    import deepspeed.comm.comm as ds_comm
    monkeypatch.setattr(ds_comm, "destroy_process_group", boom)
    assert dist_env.shutdown() is False      # never raises
    monkeypatch.undo()
    assert dist_env.shutdown() is True
    deepspeed.init_distributed()             # the fixture's teardown shuts it down again
