"""``ptv2``: train, evaluate, predict and count parameters for P-Tuning v2 runs."""
from __future__ import annotations

import argparse
import json
import sys
import traceback

from .. import config as cfg
from ..planner import PlanArgs

DESCRIPTION = """P-Tuning v2 (deep prompt tuning) on frozen encoders and GLM, with DeepSpeed.

tasks: classification (sst2 mnli rte boolq cb), NER (conll03 conll04 ontonotes tagging),
SRL (conll05 conll12), extractive QA (squad squad_v2); formats in docs/tasks.md.

commands:
  train    train prompts (and a head) for a task; writes OUT/metrics.json, OUT/artifact/,
           OUT/tb/ (TensorBoard) and OUT/checkpoints/; --tasks a,b: one shared prompt, one
           head per task (MPT-2, docs/multitask.md)
  eval     score an artifact on a labelled file; prints one JSON object of metrics
  predict  predictions in input order: JSON lines (label + scores; tokens + tags) or, for
           QA, the {question id: answer} JSON the official SQuAD scripts read
           (several --artifact: mixed-task JSON lines, each with a 'task' field)
  serve    an HTTP JSON API (FastAPI) answering every task of the artifacts given, on one
           backbone, batching concurrent requests; docs/serving.md
  params   trainable / backbone parameter counts for a model and prompt setting
  plan     per-GPU memory budget for a model, cluster shape and prompt setting
  sweep    a grid of train runs from one YAML file (skips finished runs), then summary.csv,
           summary.md (mean ± std over seeds) and an optional plot; docs/sweeps.md

Every option can also come from --config run.yaml; flags override the file.
Multi-process: deepspeed --num_gpus N --module ptv2_ds.cli.main train|eval|predict ...
Exit codes: 0 done, 2 bad input (--debug shows the traceback), 1 out of memory or an internal
failure, 3 training diverged, 75 preempted (checkpoint written; rerun to resume).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptv2", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # the DeepSpeed launcher inserts --local_rank=N before the sub-command; the rank also
    # comes from the LOCAL_RANK environment variable, which is what the trainer reads
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true",
                        help="also print the traceback of a bad-input error (exit 2)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cls, text in [
        ("train", cfg.TrainArgs, "train a task with ptv2, prompt or finetune"),
        ("eval", cfg.EvalArgs, "evaluate an artifact on labelled data"),
        ("predict", cfg.PredictArgs, "predict labels for a data file with an artifact"),
        ("serve", cfg.ServeArgs, "serve artifacts of one backbone over HTTP (JSON)"),
        ("params", cfg.ParamsArgs, "count trainable and backbone parameters"),
        ("plan", PlanArgs, "per-GPU and host memory budget and whether it fits "
                           "(exit 0 = fits)"),
        ("sweep", cfg.SweepArgs, "run a grid of train runs from a sweep YAML and summarise"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        cfg.add_arguments(p, cls)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="also print the traceback of a bad-input error (exit 2)")
        p.set_defaults(args_class=cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input (a message naming the file/line/option, no traceback;
    ``--debug`` adds it); 1 out of memory (what to lower) or a real failure (its traceback);
    train also 3 (diverged) and 75 (preempted)."""
    from ..errors import USER_ERRORS, is_out_of_memory, out_of_memory_message
    from ..trainer.distributed import shutdown

    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 2
    crashed = False  # an unexpected failure on one rank: peers may never reach a barrier
    try:
        return COMMANDS[ns.command](cfg.build(ns.args_class, ns))
    except USER_ERRORS as e:
        # bad input the code detected on purpose: the message says what to change
        if ns.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise
        if ns.debug:
            traceback.print_exc()
        print(e.code, file=sys.stderr)  # a message that already names the file/option
        return 2
    except Exception as e:
        crashed = True
        if not is_out_of_memory(e):
            raise  # a real failure keeps its traceback (exit 1)
        if ns.debug:
            traceback.print_exc()
        print(out_of_memory_message(e), file=sys.stderr)
        return 1
    finally:
        shutdown(barrier=not crashed)  # orderly end of the process group on every path


def cmd_train(args: cfg.TrainArgs) -> int:
    from ..recipes import describe
    from ..trainer import distributed as dist_env
    from ..trainer import train
    from ..trainer.guards import EXIT_DIVERGED, EXIT_PREEMPTED, Preempted, TrainingDiverged

    applied = describe(args.task_defaults, args.method, args.max_steps)
    if applied and dist_env.is_main():
        print(f"[ptv2] task defaults for {args.task or ','.join(args.tasks)}/{args.method}: "
              f"{applied}", flush=True)
    try:
        train(args)
    except Preempted as e:
        print(f"[ptv2] preempted: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def _artifact_and_data(args, data_file: str, require_labels: bool):
    """(model, task, examples, encoded, device) for ``ptv2 eval`` / ``ptv2 predict``."""
    import torch

    from ..artifacts import read_meta
    from ..inference import inference_placement, load_for_inference, task_from_meta
    from ..trainer import distributed as dist_env

    meta = read_meta(args.artifact)
    # the data is read and checked before the backbone is loaded: bad rows fail in seconds
    task = task_from_meta(meta, args.task, args.artifact, null_threshold=args.null_threshold)
    rows = task.read_file(data_file, require_labels=require_labels,
                          skip_bad_rows=args.skip_bad_rows)
    device, precision = inference_placement(args.device, args.precision, meta)
    if dist_env.world_size() > 1:
        # under a launcher (deepspeed --num_gpus N --module ptv2_ds.cli.main eval ...): each
        # rank evaluates a share of the data on its own device; rank 0 reports
        dist_env.prepare_cpu_collectives()
        dist_env.init_distributed()
        if device == "cuda":
            device = f"cuda:{dist_env.local_rank()}"
            torch.cuda.set_device(device)
    model, meta = load_for_inference(args.artifact, task, args.model, args.model_path, device,
                                     precision)
    max_len = min(args.max_seq_len or meta["max_seq_len"], model.backbone.max_positions)
    return model, task, rows, task.encode(rows, model.backbone, max_len), device


def cmd_eval(args: cfg.EvalArgs) -> int:
    from ..trainer import distributed as dist_env
    from ..trainer import evaluate

    model, task, rows, encoded, device = _artifact_and_data(args, args.data, require_labels=True)
    metrics, _ = evaluate(model, encoded, task, model.backbone, device, args.batch_size)
    if dist_env.is_main():
        print(json.dumps({"task": task.name, "examples": len(rows), **metrics}))
    return 0


def cmd_predict(args: cfg.PredictArgs) -> int:
    import dataclasses

    from ..trainer import distributed as dist_env
    from ..trainer import predict

    artifacts = [args.artifact] if isinstance(args.artifact, str) else list(args.artifact)
    if len(artifacts) > 1:  # mixed-task input over one backbone (docs/serving.md)
        from ..serving.mixed import predict_mixed

        return predict_mixed(args, artifacts)
    args = dataclasses.replace(args, artifact=artifacts[0])
    model, task, rows, encoded, device = _artifact_and_data(args, args.input,
                                                            require_labels=False)
    predictions = predict(model, encoded, task, model.backbone, device, args.batch_size,
                          show_progress=True)
    if dist_env.is_main():
        task.write_predictions(args.output, predictions, rows)
        print(f"[ptv2] wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    return 0


def cmd_serve(args: cfg.ServeArgs) -> int:
    from ..serving.server import serve

    return serve(args)


def cmd_params(args: cfg.ParamsArgs) -> int:
    from glm.config import PRESETS

    if args.model in PRESETS and not args.model_path:
        # no weights to load: count from the preset's shape (the planner's exact formulas)
        from ..planner import plan

        p = plan(PlanArgs(model=args.model, method=args.method, prefix_len=args.prefix_len,
                          prefix_layers=args.prefix_layers, reparam=args.reparam,
                          prefix_hidden=args.prefix_hidden, prompt_encoder=args.prompt_encoder,
                          head=args.head, num_classes=args.num_classes))
        counts = {"trainable_params": p.trainable_params, "backbone_params": p.backbone_params,
                  "trainable_ratio": p.trainable_params / p.backbone_params}
    else:
        from ..builder import build_model

        counts = build_model(args, num_outputs=args.num_classes).parameter_counts()
    print(json.dumps({"model": args.model, "method": args.method, **counts}))
    return 0


def cmd_plan(args: PlanArgs) -> int:
    from ..planner import run

    return run(args)


def cmd_sweep(args: cfg.SweepArgs) -> int:
    from ..sweep import run_sweep

    return run_sweep(args.config, dry_run=args.dry_run, summarize_only=args.summarize_only,
                     jobs=args.jobs, only=args.only)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "serve": cmd_serve,
            "params": cmd_params,
            "plan": cmd_plan, "sweep": cmd_sweep}

if __name__ == "__main__":
    sys.exit(main())
