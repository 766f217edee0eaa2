"""The CLI contract end to end on a tiny model: train -> artifact -> eval / predict."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptv2_ds.cli.main import main


def train_args(model_dir, data, out, *extra):
    return ["train", "--model", model_dir, "--task", "sst2", "--train-file", data["train"],
            "--validation-file", data["dev"], "--output-dir", str(out), "--max-steps", "6",
            "--eval-every", "3", "--batch-size", "8", "--max-seq-len", "32", "--lr", "1e-2",
            "--log-every", "2", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir, sst2_tiny):
    out = tmp_path_factory.mktemp("run")
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--reparam", "mlp",
                           "--prefix-hidden", "16", "--prefix-layers", "1-2")) == 0
    return out


def test_train_writes_the_output_contract(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["task"] == "sst2" and metrics["method"] == "ptv2"
    assert set(metrics["best"]) == {"accuracy", "step"} and metrics["best"]["step"] in (3, 6)
    assert metrics["final"]["step"] == 6
    assert 0 < metrics["trainable_ratio"] < 1
    assert metrics["trainable_ratio"] == pytest.approx(
        metrics["trainable_params"] / metrics["backbone_params"])
    meta = json.loads((trained / "artifact" / "ptv2_artifact.json").read_text())
    assert meta["method"] == "ptv2" and meta["labels"] == ["0", "1"]
    assert meta["prompt"]["prefix_layers"] == [1, 2]
    assert meta["prompt"]["trained_reparam"] == "mlp" and meta["prompt"]["stored_as"] == "embedding"
    assert len(meta["backbone"]["fingerprint"]) == 16
    assert {"torch", "transformers", "deepspeed"} <= set(meta["versions"])
    from safetensors.torch import load_file
    tensors = load_file(str(trained / "artifact" / "model.safetensors"))
    assert set(tensors) == {"deep_prompt.table", "head.classifier.weight", "head.classifier.bias"}
    assert tensors["deep_prompt.table"].shape == (16, 2 * 2 * 32)
    assert list((trained / "tb").rglob("events.out.tfevents.*"))
    assert (trained / "checkpoints" / "latest").is_file()


def test_tensorboard_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(trained / "tb" / "ptv2_ds"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/accuracy", "perf/samples_per_s",
            "perf/tokens_per_s", "params/trainable", "params/backbone", "train/skipped_steps",
            "train/prompt_grad_norm", "memory/rank0_peak_gib"} <= tags
    assert list((trained / "tb" / "deepspeed").rglob("events.out.tfevents.*"))  # DeepSpeed's
    assert [e.step for e in acc.Scalars("eval/accuracy")] == [3, 6]


def test_eval_round_trip_matches_best_metrics(trained, sst2_tiny, capsys):
    capsys.readouterr()
    assert main(["eval", "--artifact", str(trained / "artifact"), "--data", sst2_tiny["dev"]]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    best = json.loads((trained / "metrics.json").read_text())["best"]
    assert printed["task"] == "sst2" and printed["examples"] == 32
    assert printed["accuracy"] == pytest.approx(best["accuracy"])


def test_predict_writes_one_line_per_row_in_order(trained, sst2_tiny, tmp_path):
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--artifact", str(trained / "artifact"), "--input",
                 sst2_tiny["dev"], "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 32
    for row in lines:
        assert row["label"] in ("0", "1") and len(row["scores"]) == 2
        assert row["label"] == str(int(row["scores"][1] > row["scores"][0]))


def test_params_command(tiny_bert_dir, capsys):
    capsys.readouterr()
    assert main(["params", "--model", tiny_bert_dir, "--prefix-len", "10"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["trainable_params"] == 10 * 3 * 2 * 32 + 32 * 2 + 2


def test_yaml_config_and_flag_override(tmp_path, tiny_bert_dir, sst2_tiny):
    from ptv2_ds import config as cfg
    from ptv2_ds.cli.main import build_parser
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"model: {tiny_bert_dir}\nprefix-len: 7\nlr: 0.02\nmethod: prompt\n")
    ns = build_parser().parse_args(["train", "--config", str(yaml_file), "--prefix-len", "9"])
    args = cfg.build(ns.args_class, ns)
    assert (args.prefix_len, args.lr, args.method, args.model) == (9, 0.02, "prompt",
                                                                  tiny_bert_dir)
    yaml_file.write_text("prefx_len: 3\n")
    with pytest.raises(SystemExit, match="unknown option 'prefx_len'"):
        cfg.build(ns.args_class, build_parser().parse_args(["train", "--config", str(yaml_file)]))
    yaml_file.write_text("method: magic\n")
    with pytest.raises(SystemExit, match="'method' must be one of"):
        cfg.build(ns.args_class, build_parser().parse_args(["train", "--config", str(yaml_file)]))


def test_bad_data_is_a_message_not_a_traceback(tmp_path, tiny_bert_dir, sst2_tiny, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nfine\t1\nbroken row\n")
    code = main(train_args(tiny_bert_dir, {"train": str(bad), "dev": sst2_tiny["dev"]},
                           tmp_path / "out"))
    assert code == 2
    assert "bad.tsv:3: expected 2 tab-separated columns" in capsys.readouterr().err


def test_missing_artifact_is_named(tmp_path, capsys):
    assert main(["eval", "--artifact", str(tmp_path), "--data", "x.tsv"]) == 2
    assert "ptv2_artifact.json not found" in capsys.readouterr().err
    assert main(["eval", "--artifact", str(tmp_path)]) == 2
    assert "missing required option(s): --data" in capsys.readouterr().err


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "ptv2_ds.cli.main", "train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--prefix-len", "--reparam", "--prefix-layers", "--method", "--prompt-encoder",
                 "--head", "--verbalizer", "--deepspeed", "--eval-every", "--max-steps",
                 "--config", "--resume"):
        assert flag in out
    top = subprocess.run([sys.executable, "-m", "ptv2_ds.cli.main", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("train", "eval", "predict", "params"):
        assert command in top


def test_diverged_run_stops_with_exit_3_and_intact_checkpoint(tmp_path, tiny_bert_dir,
                                                              sst2_tiny, capsys):
    out = tmp_path / "nan"
    code = main(train_args(tiny_bert_dir, sst2_tiny, out, "--lr", "1e30", "--save-every", "1",
                           "--max-steps", "10", "--eval-every", "100"))
    assert code == 3
    assert "training diverged" in capsys.readouterr().err
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log and all(r["loss"] == r["loss"] for r in log)  # only finite steps were logged
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step{log[-1]['step']}"
    assert (out / "checkpoints" / latest / "COMPLETE").is_file()
    import torch
    states = torch.load(out / "checkpoints" / latest / "mp_rank_00_model_states.pt",
                        map_location="cpu", weights_only=False)
    assert states["module"]


def test_resume_auto_continues_and_none_restarts(tmp_path, tiny_bert_dir, sst2_tiny, capsys):
    out = tmp_path / "resume"
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--max-steps", "4")) == 0
    capsys.readouterr()
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--max-steps", "6")) == 0
    assert "resumed from" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--max-steps", "2",
                           "--resume", "none")) == 0
    assert "resumed from" not in capsys.readouterr().out


def test_bf16_run_on_cpu(tmp_path, tiny_bert_dir, sst2_tiny):
    out = tmp_path / "bf16"
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--precision", "bf16",
                           "--max-steps", "3", "--eval-every", "3")) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(r["loss_scale"] is None and r["skipped_steps"] == 0 for r in log)
    from safetensors.torch import load_file
    tensors = load_file(str(out / "artifact" / "model.safetensors"))
    assert all(t.dtype.is_floating_point and t.dtype.itemsize == 4 for t in tensors.values())


def test_params_for_a_glm_preset_needs_no_weights(capsys):
    capsys.readouterr()
    assert main(["params", "--model", "glm-10b", "--prefix-len", "16"]) == 0
    counts = json.loads(capsys.readouterr().out)
    H, L = 4096, 48
    assert counts["backbone_params"] == 9_880_682_496
    # prefix table + GLM's pooler head (Linear(H, H) + Linear(H, 2))
    assert counts["trainable_params"] == 16 * L * 2 * H + (H * H + H) + (H * 2 + 2)


def test_fp16_loss_scale_floor_stops_with_exit_3(monkeypatch, tmp_path, tiny_bert_dir,
                                                 sst2_tiny, capsys):
    """DeepSpeed raises a bare Exception when the fp16 loss scale cannot go lower; fp16 does
    not run on CPU, so the engine's step is made to raise it at step 3."""
    import deepspeed

    real_initialize = deepspeed.initialize

    def initialize(*args, **kwargs):
        engine, *rest = real_initialize(*args, **kwargs)
        real_step, calls = engine.step, []

        def step(*a, **kw):
            calls.append(1)
            if len(calls) == 3:
                raise Exception("Current loss scale already at minimum - cannot decrease "
                                "scale anymore. Exiting run.")
            return real_step(*a, **kw)

        engine.step = step
        return (engine, *rest)

    monkeypatch.setattr(deepspeed, "initialize", initialize)
    out = tmp_path / "floor"
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--save-every", "1")) == 3
    assert "loss scale already at minimum" in capsys.readouterr().err
    assert (out / "checkpoints" / "latest").read_text().strip() == "step2"


def test_finetune_under_zero3_streams_the_whole_model_into_the_artifact(
        tmp_path, tiny_bert_dir, sst2_tiny, capsys):
    out = tmp_path / "ft"
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--method", "finetune", "--deepspeed",
                           "ds_configs/cpu_zero3.json", "--precision", "fp32")) == 0
    from safetensors.torch import load_file
    tensors = load_file(str(out / "artifact" / "model.safetensors"))
    assert "backbone.encoder.encoder.layer.0.attention.self.query.weight" in tensors
    assert tensors["backbone.encoder.encoder.layer.0.attention.self.query.weight"].shape == (32, 32)
    capsys.readouterr()
    assert main(["eval", "--artifact", str(out / "artifact"), "--data", sst2_tiny["dev"]]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    best = json.loads((out / "metrics.json").read_text())["best"]
    assert printed["accuracy"] == pytest.approx(best["accuracy"])


def test_one_process_on_cpu_builds_no_shared_memory_op(tmp_path, tiny_bert_dir, sst2_tiny,
                                                         capsys):
    """A single CPU process has no collectives to speed up: DeepSpeed's shm op (a ~25 s JIT
    compile on a first run) must not be built."""
    import deepspeed.ops
    assert main(train_args(tiny_bert_dir, sst2_tiny, tmp_path / "one", "--max-steps", "1",
                           "--eval-every", "1")) == 0
    assert deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] is False
    assert "deepspeed_shm_comm_op built" not in capsys.readouterr().out


def test_a_zero3_run_leaves_torch_linear_as_it_found_it(tmp_path, tiny_bert_dir, sst2_tiny):
    import torch.nn.functional as F
    before = F.linear
    assert main(train_args(tiny_bert_dir, sst2_tiny, tmp_path / "z3", "--deepspeed",
                           "ds_configs/cpu_zero3.json", "--precision", "fp32", "--max-steps",
                           "1", "--eval-every", "1")) == 0
    assert F.linear is before


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_bad_input_error(tmp_path, capsys, where):
    argv = ["eval", "--artifact", str(tmp_path / "missing"), "--data", "x.jsonl"]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "not found" in err


@pytest.mark.parametrize("flag,value", [("--prefix-dropout", "1.5"), ("--head-dropout", "1"),
                                        ("--backbone-dropout", "-0.1")])
def test_dropout_options_are_probabilities(tiny_bert_dir, capsys, flag, value):
    capsys.readouterr()
    assert main(["params", "--model", tiny_bert_dir, flag, value]) == 2
    assert f"{flag} {float(value):g}: a drop probability must be" in capsys.readouterr().err


def test_backbone_dropout_reaches_every_backbone_dropout_only(tiny_bert_dir):
    from ptv2_ds import config as cfg
    from ptv2_ds.builder import build_model
    model = build_model(cfg.ParamsArgs(model=tiny_bert_dir, backbone_dropout=0.0,
                                       head_dropout=0.2), num_outputs=2)
    inside = [m.p for m in model.backbone.modules() if isinstance(m, torch.nn.Dropout)]
    assert inside and set(inside) == {0.0}
    assert model.head.dropout.p == 0.2 and model.deep_prompt.dropout.p == 0.1


def test_backbone_dropout_is_announced_and_part_of_the_run(tmp_path, tiny_bert_dir, sst2_tiny,
                                                          capsys):
    out = tmp_path / "bd0"
    capsys.readouterr()
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--max-steps", "3",
                           "--backbone-dropout", "0")) == 0
    assert "zero_stage=0 backbone_dropout=0\n" in capsys.readouterr().out
    # resuming with the checkpoint's dropout is the same run; another value is refused
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--max-steps", "4")) == 2
    assert "backbone_dropout" in capsys.readouterr().err
    assert main(train_args(tiny_bert_dir, sst2_tiny, out, "--max-steps", "4",
                           "--backbone-dropout", "0")) == 0
    assert "resumed from" in capsys.readouterr().out
