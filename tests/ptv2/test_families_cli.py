"""The CLI contract for the tagging and QA families: train -> artifact -> eval reproduces the
best score exactly -> predict writes the family's format; every method lowers the loss on
every backbone kind."""
import json
from pathlib import Path

import pytest
import torch

from ptv2_ds.cli.main import main
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA


@pytest.fixture(scope="module")
def conll04_tiny(tmp_path_factory):
    """The first 48 / 16 sentences of the real CoNLL-04 train / dev files."""
    out = tmp_path_factory.mktemp("conll04")
    for name, count in (("train", 48), ("dev", 16)):
        text = (SHARED / "conll04" / f"{name}.txt").read_text()
        sentences = [s for s in text.split("\n\n") if s.strip()][:count]
        (out / f"{name}.txt").write_text("\n\n".join(sentences) + "\n")
    return {"train": str(out / "train.txt"), "dev": str(out / "dev.txt")}


@pytest.fixture(scope="module")
def squad_tiny(tmp_path_factory):
    """Real SQuAD 2.0 questions: a few paragraphs of one article for train, of another for
    dev (split by article)."""
    out = tmp_path_factory.mktemp("squad")
    data = json.loads((SHARED / "squad2" / "squad2-dev-half-A.json").read_text())
    by_title = {a["title"]: a for a in data["data"]}
    for name, title, paragraphs in (("train", "Huguenot", 4), ("dev", "Normans", 2)):
        article = dict(by_title[title], paragraphs=by_title[title]["paragraphs"][:paragraphs])
        (out / f"{name}.json").write_text(json.dumps({"version": "v2.0", "data": [article]}))
    return {"train": str(out / "train.json"), "dev": str(out / "dev.json")}


def train(task, model, data, out, *extra):
    return main(["train", "--task", task, "--model", model, "--train-file", data["train"],
                 "--validation-file", data["dev"], "--output-dir", str(out),
                 "--batch-size", "8", "--log-every", "1", *extra])


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text()
            .splitlines()]


@pytest.mark.parametrize("task,data_fixture,main_metric,extra", [
    ("conll04", "conll04_tiny", "f1", ["--max-seq-len", "64"]),
    ("squad_v2", "squad_tiny", "f1", ["--max-seq-len", "96", "--doc-stride", "32"]),
])
def test_eval_reproduces_best_and_predict_writes_the_family_format(
        request, tmp_path, tiny_bert_dir, capsys, task, data_fixture, main_metric, extra):
    data = request.getfixturevalue(data_fixture)
    out = tmp_path / "run"
    assert train(task, tiny_bert_dir, data, out, "--max-steps", "6", "--eval-every", "3",
                 "--lr", "3e-2", "--test-file", data["dev"], *extra) == 0
    best = json.loads((out / "metrics.json").read_text())["best"]
    meta = json.loads((out / "artifact" / "ptv2_artifact.json").read_text())
    assert meta["task"] == task and meta["family"] in ("tagging", "qa")
    capsys.readouterr()
    assert main(["eval", "--artifact", str(out / "artifact"), "--data", data["dev"]]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed[main_metric] == best[main_metric]  # exactly: the same computation
    preds = tmp_path / "preds"
    assert main(["predict", "--artifact", str(out / "artifact"), "--input", data["dev"],
                 "--output", str(preds)]) == 0
    if task == "conll04":
        rows = [json.loads(line) for line in preds.read_text().splitlines()]
        sentences = [s for s in Path(data["dev"]).read_text().split("\n\n") if s.strip()]
        assert len(rows) == len(sentences)
        for row, sentence in zip(rows, sentences):
            words = [line.split()[0] for line in sentence.splitlines()]
            assert row["tokens"] == words and len(row["tags"]) == len(words)
        # the end-of-training predictions (the final model's) have the same shape
        assert len((out / "test_predictions.jsonl").read_text().splitlines()) == len(rows)
    else:
        answers = json.loads(preds.read_text())
        dev = json.loads(Path(data["dev"]).read_text())
        ids = [q["id"] for a in dev["data"] for p in a["paragraphs"] for q in p["qas"]]
        assert list(answers) == ids and all(isinstance(v, str) for v in answers.values())
        assert list(json.loads((out / "test_predictions.json").read_text())) == ids
        # --null-threshold overrides the artifact's ("" when null - best > threshold):
        # never / always "no answer"
        for threshold, has_ans, no_ans in (("1e9", None, 0.0), ("-1e9", 0.0, 100.0)):
            assert main(["eval", "--artifact", str(out / "artifact"), "--data", data["dev"],
                         f"--null-threshold={threshold}"]) == 0
            scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert scores["NoAns_exact"] == no_ans
            assert has_ans is None or scores["HasAns_exact"] == has_ans


@pytest.mark.parametrize("method,lr", [("ptv2", "5e-2"), ("prompt", "5e-2"),
                                       ("finetune", "1e-3")])
@pytest.mark.parametrize("task,data_fixture,extra", [
    ("conll04", "conll04_tiny", ["--max-seq-len", "64"]),
    ("squad_v2", "squad_tiny", ["--max-seq-len", "96", "--doc-stride", "32"]),
])
def test_every_method_lowers_the_loss(request, tmp_path, tiny_bert_dir, method, lr, task,
                                      data_fixture, extra):
    data = request.getfixturevalue(data_fixture)
    out = tmp_path / "run"
    assert train(task, tiny_bert_dir, data, out, "--method", method, "--lr", lr,
                 "--max-steps", "12", "--eval-every", "100", "--max-train-samples", "16",
                 "--prefix-len", "4", *extra) == 0
    seen = losses(out)
    assert len(seen) == 12
    assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3


@pytest.mark.parametrize("backbone", ["tiny_roberta_dir", "tiny_glm_dir"])
@pytest.mark.parametrize("task_name", ["conll04", "squad_v2", "conll05"])
def test_token_families_run_on_roberta_and_glm(request, backbone, task_name):
    """Features, the head and the loss for RoBERTa's and GLM's layouts; a gradient reaches the
    deep prompt."""
    from ptv2_ds.builder import build_model
    from ptv2_ds.config import ModelArgs
    from ptv2_ds.tasks import build_task, make_loader
    from ptv2_ds.tasks.qa import QAExample
    from ptv2_ds.tasks.tagging import TaggedSentence

    task = build_task(task_name)
    if task_name == "squad_v2":
        context = "The movie was great fun and the actors were good."
        examples = [QAExample("q1", "t", context, "what was the movie ?",
                              [{"text": "great fun", "answer_start": 14}], False),
                    QAExample("q2", "t", context, "what is not ?", [], True)]
    else:
        words = "the movie was great fun".split()
        examples = [TaggedSentence(words, ["O", "B-Peop", "O", "B-Loc", "I-Loc"],
                                   predicate=2 if task_name == "conll05" else None)]
        if task_name == "conll05":
            examples = [TaggedSentence(words, ["B-A0", "I-A0", "B-V", "B-A1", "I-A1"], 2)]
            task.fit_labels(examples)
    model = build_model(ModelArgs(model=request.getfixturevalue(backbone), prefix_len=3,
                                  prefix_dropout=0.0), task)
    encoded = task.encode(examples, model.backbone, 64)
    batch = next(iter(make_loader(encoded, task, model.backbone, 4)))
    loss = task.loss(model(batch), batch)
    loss.backward()
    assert torch.isfinite(loss) and model.deep_prompt.table.grad.abs().sum() > 0
    predictions = task.decode(task.batch_results(model(batch), batch), encoded)
    assert len(predictions) == len(examples)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tagging"


@pytest.mark.parametrize("task,train_file,extra", [
    ("conll03", "conll03_train.txt", []),
    ("ontonotes", "ontonotes_sample.sd.conllx", []),
    ("tagging", "tagging_train.txt", []),
    ("conll05", "conll05_train.txt", []),
    ("conll12", "conll05_train.txt", []),
])
def test_every_tagging_format_runs_the_cli_contract(tmp_path, tiny_bert_dir, capsys, task,
                                                    train_file, extra):
    """Each published format trains, writes an artifact whose eval reproduces the best f1, and
    predicts one tag per word (the fixture serves as train and dev)."""
    data = {"train": str(FIXTURES / train_file), "dev": str(FIXTURES / train_file)}
    out = tmp_path / task
    assert train(task, tiny_bert_dir, data, out, "--max-steps", "2", "--eval-every", "1",
                 *extra) == 0
    best = json.loads((out / "metrics.json").read_text())["best"]
    capsys.readouterr()
    assert main(["eval", "--artifact", str(out / "artifact"), "--data", data["dev"]]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["f1"] == best["f1"]
    if task in ("conll05", "conll12"):
        assert "f1_with_v" in printed
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", "--artifact", str(out / "artifact"), "--input", data["dev"],
                 "--output", str(preds)]) == 0
    for row in map(json.loads, preds.read_text().splitlines()):
        assert len(row["tags"]) == len(row["tokens"])
