"""Run configuration as data: one dataclass per command, turned into CLI flags and YAML keys.

Every field becomes a ``--flag`` (underscores -> dashes) with its ``help`` text; a YAML file
given with ``--config`` may set any of them (keys with dashes or underscores), and flags given
on the command line override the file.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError


def opt(default, help: str, choices=None, flag_type=None, many: bool = False):
    # many: the flag may be repeated (argparse "append"), e.g. --train-file TASK=PATH per task
    return field(default=default, metadata={"help": help, "choices": choices,
                                            "type": flag_type, "many": many})


@dataclass
class ModelArgs:
    model: str = opt("sentence-transformers/all-MiniLM-L6-v2",
                     "backbone: a local directory, a Hugging Face hub name (BERT/RoBERTa), "
                     "or a GLM preset (glm-large, glm-2b, glm-10b, glm-10b-chinese)")
    model_path: str | None = opt(None, "directory with the weights when --model is a GLM preset "
                                       "(THUDM release directory or hub layout); `ptv2 params` "
                                       "and `ptv2 plan` work from the preset alone")
    method: str = opt("ptv2", "ptv2: deep prompts on a frozen backbone; prompt: input-layer "
                              "prompt only (frozen); finetune: train everything",
                      ["ptv2", "prompt", "finetune"])
    prefix_len: int = opt(16, "prompt length P (prefix positions per layer for ptv2, prompt "
                              "tokens for --method prompt)")
    reparam: str = opt("embedding", "ptv2 prefix parameterisation: a plain table, or an MLP "
                                    "over an embedding (collapsed to a table on export)",
                       ["embedding", "mlp"])
    prefix_hidden: int = opt(512, "inner width of the --reparam mlp prefix encoder")
    prefix_dropout: float = opt(0.1, "dropout on the prefix keys/values while training")
    prefix_layers: str = opt("all", "layers (0-based) that get a prefix: all, a range 16-23, a "
                                    "list 0,5,11, or last:8; the others get none")
    prompt_encoder: str = opt("none", "--method prompt only: none (Lester et al.), mlp or lstm "
                                      "(P-tuning)", ["none", "mlp", "lstm"])
    head: str = opt("auto", "auto (default): mean for checkpoints that declare mean pooling "
                            "(sentence-embedding encoders such as minilm) when every task "
                            "classifies, else linear; linear: dropout + Linear on [CLS] "
                            "(tagging: every token, QA: start/end); mean: dropout + Linear on "
                            "the mean of the tokens' hidden states; pooler: the checkpoint's "
                            "(or GLM's) tanh-dense head; verbalizer: the backbone's LM head "
                            "scores label words at a [MASK]",
                    ["auto", "linear", "mean", "pooler", "verbalizer"])
    verbalizer: str | None = opt(None, "comma-separated label words for --head verbalizer, in "
                                       "label order (default: the task's)")
    template: str | None = opt(None, "cloze template for --head verbalizer with {a}, {b} and "
                                     "{mask} (default: the task's)")
    head_dropout: float = opt(0.1, "dropout before the linear head")
    backbone_dropout: float | None = opt(
        None, "drop probability of every dropout inside the backbone (embeddings, attention "
              "probabilities, hidden states); default: the model config's (0.1 for "
              "BERT-family and GLM checkpoints). 0 is a different, faster computation: no "
              "masks, and the fused attention kernel (docs/method.md)")
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass")
    cpu_dropout: str = opt("fast", "how dropout masks are drawn on CPU: fast (64-bit integer "
                                   "draws, about 4x cheaper, the same Bernoulli(p) masks in "
                                   "distribution) or torch (PyTorch's bernoulli_, bit-for-bit "
                                   "what earlier versions drew); GPUs always use PyTorch's "
                                   "kernels (docs/method.md)", ["fast", "torch"])
    allow_unsafe_pickle: bool = opt(False, "GLM .pt checkpoints only: also read files that the "
                                           "weights-only loader refuses with Python's full "
                                           "unpickler, which can run code hidden in the file; "
                                           "only for checkpoints you trust")


@dataclass
class DataArgs:
    # None = sst2 unless --tasks is given (TrainArgs.__post_init__), so that --task and
    # --tasks together can be refused
    task: str | None = opt(None, "task name (classification: sst2 mnli rte boolq cb; tagging: "
                                 "conll03 conll04 ontonotes conll05 conll12 tagging; QA: squad "
                                 "squad_v2); default sst2")
    # a path, or with --tasks one TASK=PATH per task (repeat the flag; YAML: a mapping)
    train_file: str | list | dict | None = opt(
        None, "local training file in the task's published format (docs/data.md); with "
              "--tasks repeat as --train-file TASK=PATH; default: the hub data set", many=True)
    validation_file: str | list | dict | None = opt(
        None, "local dev file (with --tasks: TASK=PATH, repeatable); default: carved from "
              "--train-file, or the hub's validation split", many=True)
    test_file: str | list | dict | None = opt(
        None, "local test file (labels optional; with --tasks: TASK=PATH, repeatable), "
              "predicted at the end of training into OUT/test_predictions.*", many=True)
    dev_fraction: float = opt(0.1, "share of --train-file carved out as dev when no "
                                   "--validation-file is given")
    max_train_samples: int | None = opt(None, "use only the first N training rows (after the "
                                              "dev carve)")
    max_seq_len: int | None = opt(None, "tokens per model input including special tokens "
                                        "(default: 128 classification, 256 tagging, 384 QA); "
                                        "longer sentences/documents are split into "
                                        "overlapping windows (tagging, QA) or truncated, the "
                                        "longer segment first (classification)")
    skip_bad_rows: bool = opt(False, "skip malformed data rows (and count them) instead of "
                                     "stopping at the first with its file:line")
    token_column: int = opt(0, "--task tagging: 0-based column of the word in each line")
    tag_column: int = opt(-1, "--task tagging: 0-based column of the tag (-1 = last)")
    doc_stride: int = opt(128, "QA: tokens of overlap between consecutive context windows")
    n_best: int = opt(20, "QA: start/end candidates per window considered for the answer")
    max_answer_len: int = opt(30, "QA: longest answer in tokens")
    null_threshold: float = opt(0.0, "SQuAD 2.0: answer \"\" when the no-answer score exceeds "
                                     "the best span's by more than this")


@dataclass
class TrainArgs(ModelArgs, DataArgs):
    output_dir: str = opt("runs/ptv2", "where metrics.json, artifact/, tb/ and checkpoints/ go")
    deepspeed: str | None = opt(None, "DeepSpeed JSON config (ds_configs/ in the repository); "
                                      "'auto' values are filled from these flags. Default: "
                                      "no ZeRO, as ds_configs/cpu.json")
    precision: str = opt("auto", "auto (as the DeepSpeed config says, else fp32), fp32, bf16 "
                                 "or fp16 (GPU only)", ["auto", "fp32", "bf16", "fp16"])
    # None = "task default": resolved from ptv2_ds/recipes.py when TrainArgs is made
    prefix_dropout: float | None = opt(None, "dropout on the prefix keys/values while "
                                             "training; default: per task and method "
                                             "(ptv2_ds/recipes.py), else 0.1 (the official "
                                             "code's)")
    prefix_len: int | None = opt(None, "prompt length P (prefix positions per layer for ptv2, "
                                       "prompt tokens for --method prompt); default: per task "
                                       "(ptv2_ds/recipes.py), else 16")
    batch_size: int | None = opt(None, "micro-batch size per device (default: per task, "
                                       "ptv2_ds/recipes.py, else 32)")
    grad_accum: int = opt(1, "gradient accumulation steps")
    lr: float | None = opt(None, "peak learning rate (default: per task and method, "
                                 "ptv2_ds/recipes.py, else 5e-3 ptv2, 1e-2 prompt, "
                                 "2e-5 finetune)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    warmup_ratio: float = opt(0.0, "share of the optimizer steps used for linear warm-up "
                                   "before --lr-schedule takes over")
    lr_schedule: str = opt("linear", "how the rate falls after warm-up: linear (to 0 at the "
                                     "last step) or exponential (times --lr-decay after each "
                                     "epoch, the official NER/SRL/QA code's schedule)",
                           ["linear", "exponential"])
    lr_decay: float = opt(0.95, "--lr-schedule exponential: factor applied to the rate after "
                                "each epoch (the official code's 0.95)")
    epochs: float | None = opt(None, "training epochs (ignored when --max-steps is set; "
                                     "default: per task and method, ptv2_ds/recipes.py, "
                                     "else 3)")
    max_steps: int | None = opt(None, "optimizer steps to train (overrides --epochs)")
    eval_every: int | None = opt(None, "evaluate every N optimizer steps (default: every epoch)")
    eval_batch_size: int = opt(64, "batch size for evaluation")
    log_every: int = opt(10, "write training scalars every N optimizer steps")
    seed: int = opt(42, "random seed (data order, initialisation, dropout)")
    save_every: int | None = opt(None, "also checkpoint every N optimizer steps (checkpoints "
                                       "are always written at each evaluation)")
    quantize_frozen: bool = opt(False, "ZeRO-3: keep the frozen backbone's gathered weights in "
                                       "int8 (zero_quantized_nontrainable_weights)")
    resume: str = opt("auto", "auto: continue from the newest checkpoint in OUT/checkpoints if "
                              "there is one; none: start fresh; or a checkpoint directory")
    save_total_limit: int = opt(2, "checkpoints kept in OUT/checkpoints")
    # multi-task P-Tuning v2 (MPT-2), docs/multitask.md
    tasks: str | list | None = opt(None, "multi-task run: comma-separated task names sharing "
                                         "one prompt, one head each (instead of --task)")
    task_sampling: str = opt("proportional", "--tasks: which data set each batch comes from: "
                                             "proportional (every batch of every set once per "
                                             "epoch) or temperature:T (p_i ~ n_i^(1/T))")
    prefix_init: str | None = opt(None, "where the prompt starts: random (N(0, 0.02)), vocab "
                                        "(the backbone's keys/values of P random vocabulary "
                                        "tokens) or activations (each layer's keys/values of "
                                        "the training text's P most frequent words, averaged "
                                        "over their uses); --method prompt: those tokens' "
                                        "word embeddings (docs/method.md). Default: per task "
                                        "and method (ptv2_ds/recipes.py), else random",
                                  ["random", "vocab", "activations"])
    init_prompt: str | None = opt(None, "start from the prompt (and this task's head, if it "
                                        "has one) of an artifact, e.g. a --tasks run's")

    def __post_init__(self):
        check_probabilities(self)
        if not 0.0 < self.lr_decay <= 1.0:
            raise UserError(f"--lr-decay {self.lr_decay:g}: the rate's factor per epoch must be "
                            "above 0 and at most 1")
        # the one place where "task default" (None) becomes a number: every TrainArgs, from
        # flags, YAML or Python, reaches the trainer resolved; task_defaults says what was
        # filled in (not a field: not a flag, not part of a checkpoint's run config)
        from .recipes import resolve
        from .tasks.mixture import normalize_task_args

        normalize_task_args(self)  # --task/--tasks and TASK=PATH files, checked
        self.task_defaults = resolve(self)
        if self.head == "auto":
            from .tasks import build_task

            families = [build_task(n).family for n in (self.tasks or [self.task])]
            self.task_defaults.append(_auto_head(self, families))


@dataclass
class ParamsArgs(ModelArgs):
    num_classes: int = opt(2, "classes of the linear head")

    def __post_init__(self):
        check_probabilities(self)
        if self.head == "auto":
            _auto_head(self, ["classification"])


def check_probabilities(args: ModelArgs) -> None:
    """Every dropout option is a probability in [0, 1) (1 would zero every activation)."""
    for name in ("prefix_dropout", "head_dropout", "backbone_dropout"):
        value = getattr(args, name, None)
        if value is not None and not 0.0 <= value < 1.0:
            raise UserError(f"--{name.replace('_', '-')} {value:g}: a drop probability must be "
                            "at least 0 and below 1")


def _auto_head(args: ModelArgs, families: list[str]) -> dict:
    """Replace ``args.head == "auto"`` by the head it means (``heads.resolve_auto_head``);
    returns the choice in the form of ``recipes.resolve``'s entries."""
    from .heads import resolve_auto_head

    args.head, reason = resolve_auto_head(args.model, args.model_path, families)
    return {"name": "head", "value": args.head, "source": reason}


@dataclass
class InferenceArgs:
    """What ``ptv2 eval`` and ``ptv2 predict`` share."""

    artifact: str = opt(None, "artifact directory written by ptv2 train (OUT/artifact)")
    task: str | None = opt(None, "task (default: the artifact's)")
    model: str | None = opt(None, "backbone (default: the one the artifact was trained on)")
    model_path: str | None = opt(None, "weights directory for a GLM preset")
    max_seq_len: int | None = opt(None, "default: the artifact's")
    batch_size: int = opt(64, "batch size")
    null_threshold: float | None = opt(None, "SQuAD 2.0: override the artifact's no-answer "
                                             "threshold (e.g. with best_f1_thresh from eval)")
    device: str = opt("auto", "auto: the GPU when one is visible, else the CPU", ["auto", "cpu",
                                                                              "cuda"])
    precision: str = opt("auto", "auto: the run's training precision on a GPU, fp32 on the CPU",
                         ["auto", "fp32", "bf16", "fp16"])
    skip_bad_rows: bool = opt(False, "skip malformed rows (and count them) instead of stopping "
                                     "at the first with its file:line")


@dataclass
class EvalArgs(InferenceArgs):
    data: str = opt(None, "labelled data file in the task's published format")


@dataclass
class PredictArgs(InferenceArgs):
    artifact: list[str] | None = opt(None, "artifact directory written by ptv2 train "
                                           "(OUT/artifact); repeat it (ptv2 artifacts of one "
                                           "backbone, NAME=PATH to rename a task) to predict "
                                           "mixed-task input: JSON lines with a 'task' field "
                                           "(docs/serving.md)", many=True)
    input: str = opt(None, "data file in the task's published format (labels optional)")
    output: str = opt("predictions.jsonl", "where predictions go, in input order: JSON lines "
                                           "(classification: label + scores; tagging: tokens "
                                           "+ tags), or for QA the {id: answer} JSON object "
                                           "the official SQuAD scripts read")


@dataclass
class ServeArgs:
    """``ptv2 serve``: an HTTP JSON API over ptv2 artifacts of one backbone (docs/serving.md)."""

    artifact: list[str] | None = opt(None, "artifact directory (OUT/artifact); repeat it to "
                                           "serve several tasks on one backbone (NAME=PATH "
                                           "serves a task under another name)", many=True)
    model: str | None = opt(None, "backbone (default: the one the artifacts were trained on)")
    model_path: str | None = opt(None, "weights directory for a GLM preset")
    max_seq_len: int | None = opt(None, "default: each artifact's")
    host: str = opt("127.0.0.1", "address to listen on")
    port: int = opt(8080, "port to listen on")
    max_batch: int = opt(32, "examples run together at most (requests are merged up to this)")
    max_wait_ms: float = opt(10.0, "how long the first request of a batch waits for others")
    max_items: int = opt(256, "examples one request may hold (more: 413)")
    max_chars: int = opt(100_000, "characters one example may hold over all its text fields "
                                  "(more: 413)")
    device: str = opt("auto", "auto: the GPU when one is visible, else the CPU",
                      ["auto", "cpu", "cuda"])
    precision: str = opt("auto", "auto: the training precision on a GPU, fp32 on the CPU",
                         ["auto", "fp32", "bf16", "fp16"])


@dataclass
class SweepArgs:
    """``ptv2 sweep``: the grid itself lives in the YAML file (see ptv2_ds/sweep.py)."""

    config: str = opt(None, "sweep YAML: base options, grid, overrides, output_dir "
                            "(docs/sweeps.md)")
    dry_run: bool = opt(False, "list the runs (and which are finished) without running any")
    summarize_only: bool = opt(False, "only write summary.csv/summary.md (and the plot) from "
                                      "the runs found")
    jobs: int = opt(1, "runs at the same time (each a `ptv2 train` process)")
    only: str | list | None = opt(None, "run only the runs whose options match OPTION=V1,V2 "
                                        "(repeat for several options, e.g. --only task=sst2 "
                                        "--only method=ptv2,finetune); the summary still "
                                        "covers every finished run", many=True)


REQUIRED = {EvalArgs: ("artifact", "data"), PredictArgs: ("artifact", "input"),
            ServeArgs: ("artifact",),
            SweepArgs: ("config",)}


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per dataclass field. Defaults are left unset (None) on the parser so that
    values from --config can be told apart from flags the user typed."""
    names = {f.name for f in dataclasses.fields(cls)}
    if "config" not in names:  # a command whose own option is a YAML file reads it itself
        parser.add_argument("--config", metavar="RUN.yaml",
                            help="YAML file setting any of these options; flags override it")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        default_text = "" if f.default is None else f" (default: {f.default})"
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=meta["help"] + default_text)
            continue
        parser.add_argument(flag, dest=f.name, default=None, choices=meta.get("choices"),
                            type=_type_of(f), metavar=None if meta.get("choices") else
                            f.name.upper(), help=meta["help"] + default_text,
                            action="append" if meta.get("many") else "store")


def _type_of(f):
    text = str(f.type)
    if text.startswith("int"):
        return int
    if text.startswith("float"):
        return float
    return str


def build(cls, namespace: argparse.Namespace):
    """Defaults <- YAML file (--config) <- flags typed on the command line."""
    values = {}
    if getattr(namespace, "config", None) and "config" not in {
            f.name for f in dataclasses.fields(cls)}:
        values.update(read_yaml(namespace.config, cls))
    for f in dataclasses.fields(cls):
        typed = getattr(namespace, f.name, None)
        if typed is not None:
            values[f.name] = typed
    missing = [name for name in REQUIRED.get(cls, ()) if values.get(name) is None]
    if missing:
        raise SystemExit("error: missing required option(s): " +
                         ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**values)


def read_yaml(path: str, cls) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise SystemExit(f"error: {path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"error: {path}: expected a mapping of option names to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise SystemExit(f"error: {path}: unknown option {key!r}{did_you_mean(name, fields)} "
                             f"(known: {', '.join(sorted(fields))})")
        f = fields[name]
        choices = f.metadata.get("choices")
        if isinstance(value, (list, tuple)) and name in ("verbalizer", "prefix_layers"):
            value = ",".join(str(v) for v in value)
        if value is not None and _type_of(f) is not str and f.type not in ("bool", bool):
            try:
                value = _type_of(f)(value)
            except (TypeError, ValueError):
                raise SystemExit(f"error: {path}: option {key!r} must be a number, "
                                 f"got {value!r}") from None
        if choices and value not in choices:
            raise SystemExit(f"error: {path}: option {key!r} must be one of {choices}, "
                             f"got {value!r}")
        out[name] = value
    return out


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'prefix_len'?)`` for the closest known name, or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
