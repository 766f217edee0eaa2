"""Many tasks on one backbone: mixed-task batches vs. each task separately vs. one process per
task, on CPU with the MiniLM encoder (docs/serving.md).

    python benchmarks/multitask_inference.py [--work /tmp/mt_bench] [--rows 192]

Trains (once, 2 steps each: the numbers do not depend on the prompt values) three ptv2 artifacts
on MiniLM -- sst2, conll04, squad_v2 -- with different prefix lengths and layer sets, then runs
the same inputs (``--rows`` records per task, from the shared data's dev files) three ways,
each in fresh worker processes:

  mixed     one process: the backbone once + all artifacts, records of all tasks interleaved
            and run in mixed batches (``MultiTaskPredictor.predict``)
  separate  one process: the same predictor, one task after the other (single-task batches)
  per-task  one process per task (each loads its own backbone), all running at the same time,
            ``cores // tasks`` threads each (the others use every core)

and prints examples/s of the prediction phase (after a warm-up batch) and peak RSS
(``getrusage``: the whole process, interpreter and torch included): one process for mixed vs.
the sum over the per-task processes. JSON on the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}
TASKS = {  # task: (train/dev files, training flags)
    "sst2": ("sst2", ["--prefix-len", "16", "--max-seq-len", "64"]),
    "conll04": ("conll04", ["--prefix-len", "8", "--prefix-layers", "2-5",
                            "--max-seq-len", "128"]),
    "squad_v2": ("squad2", ["--prefix-len", "4", "--prefix-layers", "0-2", "--max-seq-len", "192",
                            "--doc-stride", "64"]),
}


def _files(work: Path) -> dict[str, dict[str, str]]:
    """Small train/dev files per task, cut from the shared data."""
    out = {}
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    sst2 = (REPO / "examples" / "data" / "sst2" / "train.tsv").read_text().splitlines()
    (d / "sst2_train.tsv").write_text("\n".join(sst2[:65]) + "\n")
    (d / "sst2_dev.tsv").write_text("\n".join([sst2[0]] + sst2[1000:1600]) + "\n")
    out["sst2"] = {"train": str(d / "sst2_train.tsv"), "dev": str(d / "sst2_dev.tsv")}
    text = (DATA / "conll04" / "dev.txt").read_text()
    sentences = [s for s in text.split("\n\n") if s.strip()]
    (d / "conll_train.txt").write_text("\n\n".join(sentences[:32]) + "\n")
    (d / "conll_dev.txt").write_text("\n\n".join(sentences[32:]) + "\n")
    out["conll04"] = {"train": str(d / "conll_train.txt"), "dev": str(d / "conll_dev.txt")}
    squad = json.loads((DATA / "squad2" / "squad2-dev-half-A.json").read_text())
    articles = squad["data"]
    (d / "squad_train.json").write_text(json.dumps(
        {"version": "v2.0", "data": [dict(articles[0], paragraphs=articles[0]["paragraphs"][:3])]}))
    (d / "squad_dev.json").write_text(json.dumps({"version": "v2.0", "data": articles[1:]}))
    out["squad_v2"] = {"train": str(d / "squad_train.json"), "dev": str(d / "squad_dev.json")}
    return out


def _train(work: Path, files: dict, model: str) -> dict[str, str]:
    artifacts = {}
    for task, (_, flags) in TASKS.items():
        out = work / "runs" / task
        if not (out / "artifact" / "ptv2_artifact.json").is_file():
            subprocess.run([sys.executable, "-m", "ptv2_ds.cli.main", "train", "--task", task,
                            "--model", model, "--train-file", files[task]["train"],
                            "--validation-file", files[task]["train"], "--output-dir", str(out),
                            "--max-steps", "2", "--batch-size", "8", "--eval-every", "100",
                            *flags], check=True, env=ENV, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        artifacts[task] = str(out / "artifact")
    return artifacts


# ---- workers ------------------------------------------------------------------------------
def _worker(args) -> None:
    import torch

    from ptv2_ds.serving import MultiTaskPredictor

    torch.set_num_threads(args.threads)
    spec = json.loads(args.worker_spec)
    predictor = MultiTaskPredictor(spec["artifacts"])
    items = []
    for task, path in spec["inputs"].items():
        rows = predictor.tasks[task].task.read_file(path, require_labels=False)[:spec["rows"]]
        items.append([(task, r) for r in rows])
    if args.worker == "mixed":   # interleaved: every batch holds every task
        runs = [[x for group in zip(*items) for x in group]]
    else:
        runs = items
    predictor.predict([run[0] for run in runs], args.batch_size)   # warm-up
    start = time.time()
    count = 0
    for run in runs:
        predictor.predict(run, args.batch_size)
        count += len(run)
    end = time.time()
    print(json.dumps({"start": start, "end": end, "examples": count,
                      "forward_passes": predictor.stats.forward_passes,
                      "mixed_forward_passes": predictor.stats.mixed_forward_passes,
                      "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _spawn(mode: str, artifacts: list[str], inputs: dict, rows: int, threads: int,
           batch_size: int) -> subprocess.Popen:
    spec = json.dumps({"artifacts": artifacts, "inputs": inputs, "rows": rows})
    return subprocess.Popen([sys.executable, __file__, "--worker", mode, "--worker-spec", spec,
                             "--threads", str(threads), "--batch-size", str(batch_size)],
                            env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def _collect(procs: list[subprocess.Popen]) -> list[dict]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed with exit {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/ptv2_multitask_bench")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rows", type=int, default=192, help="records per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    work = Path(args.work)
    files = _files(work)
    artifacts = _train(work, files, args.model)
    inputs = {t: files[t]["dev"] for t in TASKS}
    n = len(TASKS)
    report = {"model": args.model, "tasks": list(TASKS), "rows_per_task": args.rows,
              "batch_size": args.batch_size, "threads": args.threads}
    for mode in ("mixed", "separate"):
        (r,) = _collect([_spawn(mode, list(artifacts.values()), inputs, args.rows,
                                args.threads, args.batch_size)])
        report[mode] = {"examples_per_s": round(r["examples"] / (r["end"] - r["start"]), 1),
                        "forward_passes": r["forward_passes"],
                        "mixed_forward_passes": r["mixed_forward_passes"],
                        "max_rss_mib": round(r["max_rss_mib"])}
    each = max(1, args.threads // n)
    rs = _collect([_spawn("single", [artifacts[t]], {t: inputs[t]}, args.rows, each,
                          args.batch_size) for t in TASKS])
    wall = max(r["end"] for r in rs) - min(r["start"] for r in rs)
    report["per_task_processes"] = {
        "examples_per_s": round(sum(r["examples"] for r in rs) / wall, 1),
        "threads_each": each, "max_rss_mib_sum": round(sum(r["max_rss_mib"] for r in rs)),
        "max_rss_mib_each": [round(r["max_rss_mib"]) for r in rs]}
    for mode in ("mixed", "separate", "per_task_processes"):
        r = report[mode]
        rss = r.get("max_rss_mib", r.get("max_rss_mib_sum"))
        print(f"{mode:20s} {r['examples_per_s']:8.1f} examples/s   peak RSS {rss:6d} MiB")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
