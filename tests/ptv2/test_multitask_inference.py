"""Many tasks on one frozen backbone: a mixed-task batch (one prefix gather, one backbone
forward, each task's head) predicts what each task predicts alone; artifacts of other
backbones or methods are refused; ``ptv2 predict`` with several artifacts reads a ``task``
field per line and writes predictions in input order."""
import json
from pathlib import Path

import pytest
import torch

from ptv2_ds.cli.main import main
from ptv2_ds.errors import UserError
from tests.conftest import SHARED_DATA


def _train(out: Path, task: str, model: str, train: str, dev: str, *extra: str) -> str:
    # a high rate for a few steps: prompts far from their N(0, 0.02) start, so an unmasked
    # padding column or a prefix in the wrong layer would change the results
    assert main(["train", "--task", task, "--model", model, "--train-file", train,
                 "--validation-file", dev, "--output-dir", str(out), "--batch-size", "8",
                 "--max-steps", "2", "--eval-every", "100", "--lr", "0.3",
                 "--prefix-dropout", "0", *extra]) == 0
    return str(out / "artifact")


@pytest.fixture(scope="module")
def data(tmp_path_factory, sst2_tiny):
    out = tmp_path_factory.mktemp("mixed_data")
    text = (SHARED_DATA / "conll04" / "dev.txt").read_text()
    sentences = [s for s in text.split("\n\n") if s.strip()]
    (out / "conll_train.txt").write_text("\n\n".join(sentences[:16]) + "\n")
    (out / "conll_dev.txt").write_text("\n\n".join(sentences[16:28]) + "\n")
    squad = json.loads((SHARED_DATA / "squad2" / "squad2-dev-half-A.json").read_text())
    by_title = {a["title"]: a for a in squad["data"]}
    for name, title, count in (("train", "Huguenot", 2), ("dev", "Normans", 2)):
        article = dict(by_title[title], paragraphs=by_title[title]["paragraphs"][:count])
        (out / f"squad_{name}.json").write_text(json.dumps({"version": "v2.0",
                                                            "data": [article]}))
    return {"sst2": sst2_tiny, "conll04": {"train": str(out / "conll_train.txt"),
                                           "dev": str(out / "conll_dev.txt")},
            "squad_v2": {"train": str(out / "squad_train.json"),
                         "dev": str(out / "squad_dev.json")}}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_bert_dir, data):
    """Three tiny artifacts on one backbone, with different prefix lengths and layer sets:
    sst2 (P=4, all 3 layers), conll04 (P=6, layers 1,2), squad_v2 (P=2, layer 0)."""
    out = tmp_path_factory.mktemp("mixed_runs")
    return {
        "sst2": _train(out / "sst2", "sst2", tiny_bert_dir, data["sst2"]["train"],
                       data["sst2"]["dev"], "--prefix-len", "4"),
        "conll04": _train(out / "conll04", "conll04", tiny_bert_dir, data["conll04"]["train"],
                          data["conll04"]["dev"], "--prefix-len", "6", "--prefix-layers",
                          "1,2", "--max-seq-len", "48"),
        "squad_v2": _train(out / "squad", "squad_v2", tiny_bert_dir, data["squad_v2"]["train"],
                           data["squad_v2"]["dev"], "--prefix-len", "2", "--prefix-layers", "0",
                           "--max-seq-len", "64", "--doc-stride", "16"),
    }


@pytest.fixture(scope="module")
def predictor(artifacts):
    from ptv2_ds.serving import MultiTaskPredictor
    return MultiTaskPredictor(list(artifacts.values()))


def _alone(artifact: str, examples: list) -> list:
    """Predictions of one artifact on its own (the ``ptv2 predict`` path)."""
    from ptv2_ds.artifacts import read_meta
    from ptv2_ds.inference import load_for_inference, task_from_meta
    from ptv2_ds.trainer import predict

    meta = read_meta(artifact)
    task = task_from_meta(meta)
    model, meta = load_for_inference(artifact, task)
    encoded = task.encode(examples, model.backbone, meta["max_seq_len"])
    return predict(model, encoded, task, model.backbone, "cpu", 4)


def _examples(predictor, data, names=("sst2", "conll04", "squad_v2")) -> dict[str, list]:
    out = {}
    for name in names:
        task = predictor.tasks[name].task
        out[name] = task.read_file(data[name]["dev"], require_labels=False)[:9]
    return out


def _assert_same(name: str, mixed, alone) -> None:
    if name == "sst2":
        assert mixed["label"] == alone["label"]
        assert mixed["scores"] == pytest.approx(alone["scores"], abs=1e-5)
    elif name == "conll04":
        assert mixed == alone
    else:
        assert mixed.text == alone.text and mixed.span_text == alone.span_text
        assert mixed.score == pytest.approx(alone.score, abs=1e-4)
        assert mixed.null_score_diff == pytest.approx(alone.null_score_diff, abs=1e-4)


def test_mixed_batches_equal_each_task_alone(predictor, artifacts, data):
    examples = _examples(predictor, data)
    # interleaved: every batch of 5 holds examples of all three tasks
    items = [(name, examples[name][i]) for i in range(9) for name in examples]
    before = predictor.stats.mixed_forward_passes
    mixed = predictor.predict(items, batch_size=5)
    assert predictor.stats.mixed_forward_passes > before
    alone = {name: _alone(artifacts[name], rows) for name, rows in examples.items()}
    seen = {name: 0 for name in examples}
    for (name, _), prediction in zip(items, mixed):
        _assert_same(name, prediction, alone[name][seen[name]])
        seen[name] += 1
    # the prefixes are far from zero: had the padded/missing-layer columns been visible, the
    # scores would move (a check that this test can fail)
    kv, mask = predictor.prefix_kv, predictor.prefix_mask   # [L, 2, T, h, P, d], [L, T, P]
    assert kv[mask[:, None, :, None, :, None].expand_as(kv)].abs().mean() > 0.1
    assert not kv[~mask[:, None, :, None, :, None].expand_as(kv)].any()


def test_prefix_table_gathers_each_tasks_prompt_and_masks_the_rest(predictor):
    from ptv2_ds.artifacts import load_artifact

    tasks = predictor.tasks
    assert predictor.prefix_layers == (0, 1, 2)
    assert tuple(predictor.prefix_kv.shape[2:]) == (3, 4, 6, 8)   # T, heads, P_max, d
    index = torch.tensor([tasks["conll04"].index, tasks["sst2"].index,
                          tasks["squad_v2"].index, tasks["conll04"].index])
    prefix, shared = predictor.prefix_for(index)
    assert shared is None and all(len(entry) == 3 for entry in prefix)
    masks = torch.stack([entry[2] for entry in prefix])   # [layer, B, P]
    assert masks[:, 0].sum(-1).tolist() == [0, 6, 6]       # conll04: layers 1, 2; P = 6
    assert masks[:, 1].sum(-1).tolist() == [4, 4, 4]       # sst2: every layer; P = 4
    assert masks[:, 2].sum(-1).tolist() == [2, 0, 0]       # squad_v2: layer 0; P = 2
    # the gathered keys/values are the artifact's table, laid out as DeepPrompt.forward does
    meta_layers = tasks["conll04"].prefix_layers
    _, tensors = load_artifact(tasks["conll04"].artifact)
    table = tensors["deep_prompt.table"].view(6, 2 * len(meta_layers), 4, 8).permute(1, 2, 0, 3)
    for slot, layer in enumerate(meta_layers):
        k, v, _ = prefix[layer]
        assert torch.equal(k[0], table[2 * slot]) and torch.equal(v[3], table[2 * slot + 1])
    # a batch of one task whose prefix fills every layer needs no mask at all
    only_sst2, shared = predictor.prefix_for(torch.tensor([tasks["sst2"].index] * 2))
    assert shared is None and all(len(entry) == 2 for entry in only_sst2)
    assert only_sst2[0][0].shape == (2, 4, 4, 8)   # P cut to the batch's longest prefix


def test_a_single_task_batch_is_bit_identical_to_the_task_alone(predictor, artifacts, data):
    rows = _examples(predictor, data)["sst2"]
    mixed = predictor.predict([("sst2", r) for r in rows], batch_size=4)
    alone = _alone(artifacts["sst2"], rows)
    assert [m["scores"] for m in mixed] == [a["scores"] for a in alone]


def test_artifacts_of_another_backbone_or_method_are_refused(artifacts, tiny_roberta_dir,
                                                             data, tmp_path):
    from ptv2_ds.serving import MultiTaskPredictor

    other = _train(tmp_path / "rob", "sst2", tiny_roberta_dir, data["sst2"]["train"],
                   data["sst2"]["dev"], "--prefix-len", "2")
    with pytest.raises(UserError) as e:
        MultiTaskPredictor([artifacts["sst2"], other])
    fingerprints = [json.loads(Path(a, "ptv2_artifact.json").read_text())["backbone"]
                    ["fingerprint"] for a in (artifacts["sst2"], other)]
    for text in [artifacts["sst2"], other, *fingerprints]:
        assert text in str(e.value)
    prompt = tmp_path / "prompt_artifact"
    meta = json.loads(Path(artifacts["sst2"], "ptv2_artifact.json").read_text())
    prompt.mkdir()
    (prompt / "ptv2_artifact.json").write_text(json.dumps({**meta, "method": "prompt"}))
    (prompt / "model.safetensors").write_bytes(
        Path(artifacts["sst2"], "model.safetensors").read_bytes())
    with pytest.raises(UserError, match="only ptv2 artifacts share"):
        MultiTaskPredictor([artifacts["conll04"], str(prompt)])
    with pytest.raises(UserError, match="two artifacts serve task 'sst2'.*NAME=PATH"):
        MultiTaskPredictor([artifacts["sst2"], artifacts["sst2"]])


def _mixed_lines() -> list[dict]:
    return [
        {"task": "conll04", "tokens": ["John", "Smith", "lives", "in", "Boston", "."]},
        {"task": "sst2", "sentence": "the movie was great fun"},
        {"task": "squad_v2", "id": "q1", "question": "Who ruled Normandy?",
         "context": "The Normans ruled Normandy in the tenth century."},
        {"task": "sst2", "sentence": "the plot was bad and boring"},
        {"task": "conll04", "tokens": ["Paris"]},
    ]


def test_predict_with_several_artifacts_writes_input_order(artifacts, tmp_path, predictor):
    lines = _mixed_lines()
    source = tmp_path / "mixed.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "preds.jsonl"
    assert main(["predict", *[f"--artifact={a}" for a in artifacts.values()],
                 "--input", str(source), "--output", str(out), "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task"] for r in rows] == [line["task"] for line in lines]
    assert rows[0]["tokens"] == lines[0]["tokens"] and len(rows[0]["tags"]) == 6
    assert rows[4]["tokens"] == ["Paris"] and len(rows[4]["tags"]) == 1
    assert rows[2]["id"] == "q1" and isinstance(rows[2]["answer"], str)
    assert set(rows[1]) == {"task", "label", "scores"} and rows[1]["label"] in ("0", "1")
    # each line equals what its artifact alone writes for the same input
    sst2_file = tmp_path / "sst2.tsv"
    sst2_file.write_text("sentence\tlabel\n" + "".join(
        f"{line['sentence']}\t\n" for line in lines if line["task"] == "sst2"))
    alone = tmp_path / "sst2_preds.jsonl"
    assert main(["predict", "--artifact", artifacts["sst2"], "--input", str(sst2_file),
                 "--output", str(alone)]) == 0
    expected = [json.loads(line) for line in alone.read_text().splitlines()]
    got = [{k: v for k, v in r.items() if k != "task"} for r in rows if r["task"] == "sst2"]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected):
        assert g["scores"] == pytest.approx(e["scores"], abs=2e-6)


@pytest.mark.parametrize("line,message", [
    ({"sentence": "no task here"}, "mixed.jsonl:2: missing field 'task'"),
    ({"task": "mnli", "sentence": "x"}, "mixed.jsonl:2: unknown task 'mnli'"),
    ({"task": "sst2", "text": "x"}, "mixed.jsonl:2: missing field 'sentence' for task sst2"),
    ({"task": "conll04", "tokens": "John Smith"}, "mixed.jsonl:2: field 'tokens'"),
    ({"task": "squad_v2", "question": "Who?"}, "mixed.jsonl:2: missing field 'context'"),
])
def test_bad_mixed_lines_name_the_file_line_and_field(artifacts, tmp_path, capsys, line,
                                                      message):
    source = tmp_path / "mixed.jsonl"
    source.write_text(json.dumps(_mixed_lines()[1]) + "\n" + json.dumps(line) + "\n")
    assert main(["predict", "--artifact", artifacts["sst2"], "--artifact",
                 artifacts["conll04"], "--artifact", artifacts["squad_v2"], "--input",
                 str(source), "--output", str(tmp_path / "p.jsonl")]) == 2
    assert message in capsys.readouterr().err


def test_a_multitask_artifact_serves_each_of_its_heads(artifacts, data, tmp_path):
    """An MPT-2 artifact (one shared prompt, a head per task) is served as one task per head:
    here sst2's prompt shared by sst2's and conll04's heads."""
    from safetensors.torch import load_file

    from ptv2_ds.artifacts import save_artifact, task_view
    from ptv2_ds.serving import MultiTaskPredictor

    per_task = ("task", "family", "task_options", "labels", "head", "template", "max_seq_len")
    metas = {n: json.loads(Path(artifacts[n], "ptv2_artifact.json").read_text())
             for n in ("sst2", "conll04")}
    weights = {n: load_file(str(Path(artifacts[n], "model.safetensors")))
               for n in ("sst2", "conll04")}
    shared = {k: v for k, v in metas["sst2"].items() if k not in per_task}
    meta = {**shared, "multitask": True, "tasks": ["sst2", "conll04"],
            "task_meta": {n: {k: m[k] for k in per_task if k in m} for n, m in metas.items()}}
    tensors = {"deep_prompt.table": weights["sst2"]["deep_prompt.table"]}
    for n, w in weights.items():
        tensors.update({f"heads.{n}.{k[5:]}": v for k, v in w.items() if k.startswith("head.")})
    mpt = save_artifact(tmp_path / "mpt", tensors, meta)
    view_meta, view_tensors = task_view(json.loads((mpt / "ptv2_artifact.json").read_text()),
                                        tensors, "conll04")
    conll_view = save_artifact(tmp_path / "conll_view", view_tensors, view_meta)

    predictor = MultiTaskPredictor([str(mpt), f"ner={artifacts['conll04']}"])
    assert list(predictor.tasks) == ["sst2", "conll04", "ner"]
    examples = _examples(predictor, data, ("sst2", "conll04"))
    items = [(n, examples[n][i]) for i in range(6) for n in ("sst2", "conll04")]
    items += [("ner", ex) for ex in examples["conll04"][:6]]
    got = predictor.predict(items, batch_size=5)
    for name, source, rows in (("sst2", artifacts["sst2"], examples["sst2"][:6]),
                               ("conll04", str(conll_view), examples["conll04"][:6]),
                               ("ner", artifacts["conll04"], examples["conll04"][:6])):
        mine = [p for (n, _), p in zip(items, got) if n == name]
        for m, a in zip(mine, _alone(source, rows)):
            _assert_same("sst2" if name == "sst2" else "conll04", m, a)
    with pytest.raises(UserError, match="NAME=PATH renames the task of a single-task"):
        MultiTaskPredictor([f"x={mpt}"])


def test_glm_tasks_of_one_layer_set_share_a_batch_and_other_sets_are_refused(
        tiny_glm_dir, sst2_tiny, tmp_path):
    """GLM's attention takes one prefix mask for all layers: different prefix lengths work
    (masked to the longest), different layer sets are refused with the sets named."""
    from ptv2_ds.serving import MultiTaskPredictor

    def run(name, *extra):
        return _train(tmp_path / name, "sst2", tiny_glm_dir, sst2_tiny["train"],
                      sst2_tiny["dev"], "--max-seq-len", "32", *extra)

    long_, short = run("p4", "--prefix-len", "4"), run("p2", "--prefix-len", "2")
    predictor = MultiTaskPredictor([f"long={long_}", f"short={short}"])
    rows = predictor.tasks["long"].task.read_file(sst2_tiny["dev"], require_labels=False)[:6]
    items = [(name, r) for r in rows for name in ("long", "short")]
    got = predictor.predict(items, batch_size=4)
    for name, source in (("long", long_), ("short", short)):
        mine = [p for (n, _), p in zip(items, got) if n == name]
        for m, a in zip(mine, _alone(source, rows)):
            _assert_same("sst2", m, a)
    other = run("layers", "--prefix-len", "2", "--prefix-layers", "0,1")
    with pytest.raises(UserError, match=r"different layers .*short: \[0, 1, 2\].*other: \[0, 1\]"):
        MultiTaskPredictor([f"short={short}", f"other={other}"])
