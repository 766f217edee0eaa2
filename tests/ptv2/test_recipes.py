"""Per-task defaults (ptv2_ds/recipes.py) and the official recipes (recipes/*.yaml)."""
import re
from pathlib import Path

import pytest
import yaml

from ptv2_ds import config as cfg
from ptv2_ds import recipes
from ptv2_ds.cli.main import build_parser, main
from ptv2_ds.tasks import build_task

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO.parent / "shared" / "OFFICIAL_RECIPES.md"
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def parsed(*argv) -> cfg.TrainArgs:
    return cfg.build(cfg.TrainArgs, build_parser().parse_args(["train", *argv]))


def test_task_defaults_fill_only_what_the_user_left_unset(tmp_path):
    args = parsed("--task", "rte")  # official rte_bert: 60 epochs, lr 1e-2, P 20, batch 32
    assert (args.epochs, args.lr, args.prefix_len, args.batch_size, args.max_seq_len) == \
        (60.0, 1e-2, 20, 32, 128)
    # the default model (MiniLM) declares mean pooling: --head auto means mean
    # no prefix_init / prefix_dropout rule for rte: the plain defaults, not reported as task
    # defaults
    assert (args.prefix_init, args.prefix_dropout) == ("random", 0.1)
    assert [a["name"] for a in args.task_defaults] == \
        [f for f in recipes.FIELDS if f not in recipes.UNRULED] + ["head"]
    assert all("rte_bert" in a["source"] for a in args.task_defaults[:-1])

    flags = parsed("--task", "rte", "--epochs", "5", "--lr", "3e-3")
    assert (flags.epochs, flags.lr, flags.prefix_len) == (5.0, 3e-3, 20)
    assert {a["name"] for a in flags.task_defaults} == {"batch_size", "prefix_len", "max_seq_len",
                                                        "head"}

    run = tmp_path / "run.yaml"
    run.write_text("task: rte\nbatch_size: 8\nprefix-len: 4\n")
    from_yaml = parsed("--config", str(run))
    assert (from_yaml.batch_size, from_yaml.prefix_len, from_yaml.epochs) == (8, 4, 60.0)
    assert {a["name"] for a in from_yaml.task_defaults} == {"epochs", "lr", "max_seq_len", "head"}
    # a flag over the YAML still counts as set by the user
    assert parsed("--config", str(run), "--epochs", "2").epochs == 2.0


def test_method_specific_and_generic_defaults():
    ft = cfg.TrainArgs(task="sst2", method="finetune")
    assert (ft.lr, ft.epochs, ft.max_seq_len, ft.batch_size) == (3e-5, 3.0, 64, 32)
    ptv2 = cfg.TrainArgs(task="conll04")  # official P 128, overridden by the MiniLM measurement
    assert (ptv2.prefix_len, ptv2.lr, ptv2.epochs, ptv2.batch_size) == (64, 2e-2, 40.0, 8)
    assert "batch_size=8 (measured" in recipes.describe(ptv2.task_defaults, "ptv2")
    prompt = cfg.TrainArgs(task="conll04", method="prompt")  # the official batch 32
    assert (prompt.prefix_len, prompt.lr, prompt.epochs, prompt.batch_size) == \
        (16, 1e-2, 40.0, 32)
    assert cfg.TrainArgs(task="conll04", method="finetune").batch_size == 8
    assert cfg.TrainArgs(task="conll04", method="prompt", batch_size=16).batch_size == 16
    cb = cfg.TrainArgs(task="cb")  # no rule: generic values; lr and length left to the trainer
    assert (cb.epochs, cb.batch_size, cb.prefix_len, cb.lr, cb.max_seq_len) == \
        (3.0, 32, 16, None, None)


def test_conll04_ptv2_trains_its_prefix_without_dropout_by_default():
    ptv2 = cfg.TrainArgs(task="conll04")
    assert ptv2.prefix_dropout == 0.0 and recipes.is_task_default(ptv2, "prefix_dropout")
    assert "prefix_dropout=0 (measured" in recipes.describe(ptv2.task_defaults, "ptv2")
    # the user's value, the other methods and the other tasks keep the official 0.1
    assert cfg.TrainArgs(task="conll04", prefix_dropout=0.1).prefix_dropout == 0.1
    assert cfg.TrainArgs(task="conll04", method="prompt").prefix_dropout == 0.1
    assert cfg.TrainArgs(task="sst2").prefix_dropout == 0.1


def test_prefix_init_default_steps_aside_where_it_cannot_apply():
    ptv2 = cfg.TrainArgs(task="conll04")
    assert ptv2.prefix_init == "activations"
    assert any(a["name"] == "prefix_init" and a["value"] == "activations"
               for a in ptv2.task_defaults)
    for method in ("prompt", "finetune"):  # the rule is ptv2's only
        assert cfg.TrainArgs(task="conll04", method=method).prefix_init == "random"
    assert cfg.TrainArgs(task="conll04", prefix_init="vocab").prefix_init == "vocab"
    for extra, why in [({"reparam": "mlp"}, "--reparam mlp"),
                       ({"init_prompt": "some/artifact"}, "--init-prompt")]:
        args = cfg.TrainArgs(task="conll04", **extra)
        entry = next(a for a in args.task_defaults if a["name"] == "prefix_init")
        assert args.prefix_init == entry["value"] == "random"
        reason = entry["source"].split("random here: ")[1]
        assert why in reason and reason == recipes.prefix_init_conflict(args, "activations")
    # ZeRO-3 (known to the trainer only): the default becomes random and says so; an explicit
    # choice is left for check_prefix_init to refuse with its message
    assert recipes.prefix_init_for_zero_stage(ptv2, 2) is None and \
        ptv2.prefix_init == "activations"
    note = recipes.prefix_init_for_zero_stage(ptv2, 3)
    assert ptv2.prefix_init == "random" and "ZeRO-3" in note and "activations" in note
    assert recipes.prefix_init_for_zero_stage(ptv2, 3) is None  # already random: said once
    explicit = cfg.TrainArgs(task="conll04", prefix_init="activations")
    assert recipes.prefix_init_for_zero_stage(explicit, 3) is None
    assert explicit.prefix_init == "activations"


def test_lookup_prefers_specific_rules_then_later_ones():
    rules = [recipes.rule((), (), "generic", epochs=1.0),
             recipes.rule((), "ptv2", "method", epochs=2.0),
             recipes.rule("t", (), "task", epochs=3.0),
             recipes.rule("t", "ptv2", "both", epochs=4.0),
             recipes.rule("t", "ptv2", "both, later", epochs=5.0)]
    assert recipes.lookup("t", "ptv2", "epochs", rules).source == "both, later"
    assert recipes.lookup("t", "finetune", "epochs", rules).source == "task"
    assert recipes.lookup("u", "ptv2", "epochs", rules).source == "method"
    assert recipes.lookup("u", "prompt", "epochs", rules).source == "generic"
    assert recipes.lookup("u", "prompt", "lr", rules) is None


def test_every_rule_names_real_options_tasks_and_methods():
    from ptv2_ds.tasks import TASKS

    methods = {f.name: f for f in cfg.dataclasses.fields(cfg.TrainArgs)}["method"].metadata[
        "choices"]
    for r in recipes.RULES:
        assert set(r.values) <= set(recipes.FIELDS), r
        assert set(r.tasks) <= set(TASKS), r
        assert set(r.methods) <= set(methods), r
        assert r.source.split(":")[0] in ("official", "measured", "generic"), r


def test_train_prints_the_defaults_it_applied(monkeypatch, capsys, tmp_path):
    import ptv2_ds.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda args: seen.setdefault("args", args))
    assert main(["train", "--task", "rte", "--epochs", "7", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[ptv2] task defaults for rte/ptv2: lr=0.01 (official: the rte_bert script" in out
    assert "epochs=" not in out  # set by the user: not a default
    assert seen["args"].epochs == 7.0 and seen["args"].prefix_len == 20
    assert main(["train", "--task", "rte", "--epochs", "1", "--lr", "1e-3", "--batch-size", "4",
                 "--prefix-len", "2", "--max-seq-len", "32", "--head", "linear",
                 "--output-dir", str(tmp_path)]) == 0
    assert "task defaults" not in capsys.readouterr().out  # nothing left to fill


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads_through_the_config_parser(path):
    args = parsed("--config", str(path))
    data = yaml.safe_load(path.read_text())
    task, backbone = path.stem.split("_", 1) if not path.stem.startswith("squad_v2") else \
        ("squad_v2", path.stem[len("squad_v2_"):])
    assert (args.task, args.model, args.method) == (task, backbone, "ptv2")
    for key in ("prefix_len", "lr", "epochs", "batch_size"):
        assert getattr(args, key) == pytest.approx(float(data[key])), key
    # the recipe sets the rest; --head auto is linear on these (non-sentence-embedding) models
    assert {a["name"] for a in args.task_defaults} <= {"max_seq_len", "head"}
    assert args.head == data.get("head", "linear")
    header = path.read_text().split("\ntask:")[0]
    assert re.search(r"# Source: THUDM/P-tuning-v2 run_script, the \w+ script", header)


def _official_table() -> dict:
    rows = {}
    for line in OFFICIAL.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"\w+", cells[0]) and cells[2].isdigit():
            rows[cells[0]] = {"backbone": cells[1], "prefix_len": int(cells[2]),
                              "lr": float(cells[3]), "epochs": float(cells[4]),
                              "batch_size": int(cells[5]), "dropout": float(cells[7]),
                              "seed": int(cells[9])}
    return rows


@pytest.mark.skipif(not OFFICIAL.is_file(), reason="../shared/OFFICIAL_RECIPES.md not here")
def test_recipes_match_the_official_scripts():
    table = _official_table()
    assert len(table) >= 18
    for path in RECIPES:
        script = re.search(r"the (\w+) script", path.read_text()).group(1)
        row, args = table[script], parsed("--config", str(path))
        assert args.model == row["backbone"], path.name
        assert (args.prefix_len, args.batch_size, args.seed) == \
            (row["prefix_len"], row["batch_size"], row["seed"]), path.name
        assert (args.lr, args.epochs) == (pytest.approx(row["lr"]), row["epochs"]), path.name
        assert args.prefix_dropout == args.head_dropout == row["dropout"], path.name
        # SuperGLUE: the default linear decay; NER, SRL and QA: ExponentialLR(0.95) per epoch
        family = build_task(args.task).family
        expected = ("linear", 0.95) if family == "classification" else ("exponential", 0.95)
        assert (args.lr_schedule, args.lr_decay) == expected, path.name


# ---- --head auto ----------------------------------------------------------------------------
def _sentence_transformers_dir(tmp_path, pooling: dict) -> str:
    import json
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "1_Pool",
          "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pool").mkdir()
    (tmp_path / "1_Pool" / "config.json").write_text(json.dumps(pooling))
    return str(tmp_path)


def test_declared_pooling(tmp_path, tiny_bert_dir, tiny_glm_dir):
    from ptv2_ds.backbones import declared_pooling
    assert declared_pooling("minilm") == "mean"  # the offline package's 1_Pooling/config.json
    assert declared_pooling(tiny_bert_dir) is None and declared_pooling(tiny_glm_dir) is None
    assert declared_pooling(_sentence_transformers_dir(
        tmp_path / "cls", {"pooling_mode_cls_token": True})) == "cls"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "modules.json").write_text("not json")
    assert declared_pooling(str(broken)) is None


def test_head_auto_is_mean_for_a_mean_pooling_encoder_on_classification(tiny_bert_dir):
    args = parsed("--task", "sst2", "--model", "minilm")
    assert args.head == "mean"
    assert "declares mean pooling" in recipes.describe(args.task_defaults, args.method)
    assert parsed("--task", "conll04", "--model", "minilm").head == "linear"  # token head
    assert parsed("--tasks", "sst2,conll04", "--model", "minilm").head == "linear"
    assert parsed("--tasks", "sst2,rte", "--model", "minilm").head == "mean"
    assert parsed("--task", "sst2", "--model", tiny_bert_dir).head == "linear"
    explicit = parsed("--task", "sst2", "--model", "minilm", "--head", "linear")
    assert explicit.head == "linear"
    assert "head" not in {a["name"] for a in explicit.task_defaults}
    params = cfg.build(cfg.ParamsArgs, build_parser().parse_args(["params", "--model", "minilm"]))
    assert params.head == "mean"


def test_prefix_init_default_becomes_random_when_the_data_cannot_serve_it(
        tmp_path, tiny_bert_dir, capsys):
    """CoNLL-04's ptv2 default (activations, P 64) on a 13-word file: the run trains from a
    random prompt and says why; the same init asked for explicitly is refused with the
    reason."""
    data = str(REPO / "tests" / "fixtures" / "tagging" / "conll04_sample.txt")
    common = ["train", "--task", "conll04", "--model", tiny_bert_dir, "--train-file", data,
              "--validation-file", data, "--max-steps", "1", "--batch-size", "4"]
    assert main(common + ["--output-dir", str(tmp_path / "default")]) == 0
    printed = capsys.readouterr().out
    assert "not from the task's default --prefix-init activations" in printed
    assert "fewer than --prefix-len 64" in printed
    assert main(common + ["--output-dir", str(tmp_path / "explicit"),
                          "--prefix-init", "activations"]) == 2
    captured = capsys.readouterr()
    assert "fewer than --prefix-len 64" in captured.out + captured.err
