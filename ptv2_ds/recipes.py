"""Per-task (and per-method) defaults for ``ptv2 train``: the values used when the user sets
neither a flag nor a YAML key for them.

One table, ``RULES``, read top to bottom; each rule names the tasks and methods it covers
(empty = all), the values it sets and where they come from. For one option of one run the
most specific matching rule wins (task and method > task only > method only > generic), and
among equally specific rules the later one. Edit the table to retune a default; the tests
check that every rule names real options, tasks and methods.

Sources:
  official   the official P-Tuning v2 run script for the task (THUDM/P-tuning-v2 run_script/,
             summarised in ../shared/OFFICIAL_RECIPES.md): the BERT script where there is one
             (MiniLM is a BERT), else the RoBERTa one. Epochs, lr, prefix length and batch
             size are taken together (the lr was tuned with that batch and length).
  measured   a measurement of this toolkit with the MiniLM encoder on CPU (docs/RESULTS.md or
             the issue named), which overrides the official value where both exist.
  generic    the defaults every task had before per-task defaults existed.

``max_seq_len`` and ``lr`` may stay None after resolution: the task family's length (128
classification, 256 tagging, 384 QA) and the method's rate (``builder.DEFAULT_LR``) apply then,
inside the trainer. ``prefix_init`` without a rule is ``random`` and ``prefix_dropout`` 0.1
(neither reported as a task default); a rule's other init falls back to ``random`` where
``prompts.init.check_prefix_init`` would refuse it for the run (``--reparam mlp``,
``--init-prompt``; ZeRO-3, known to the trainer only) or the training text has too few
different words, and says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# TrainArgs fields that default to None ("task default") and are resolved here
FIELDS = ("epochs", "lr", "batch_size", "prefix_len", "max_seq_len", "prefix_init",
          "prefix_dropout")
# the value without a rule (the plain default, not listed as a task default)
UNRULED = {"prefix_init": "random", "prefix_dropout": 0.1}
PROMPT_METHODS = ("ptv2", "prompt")


@dataclass(frozen=True)
class Rule:
    tasks: tuple[str, ...]          # () = every task
    methods: tuple[str, ...]        # () = every method
    values: dict = field(default_factory=dict)
    source: str = ""


def rule(tasks: str | tuple, methods: str | tuple, source: str, **values) -> Rule:
    as_tuple = (lambda x: (x,) if isinstance(x, str) else tuple(x))
    return Rule(as_tuple(tasks), as_tuple(methods), values, source)


ALL = ()
RULES: list[Rule] = [
    # ---- generic -----------------------------------------------------------------------------
    rule(ALL, ALL, "generic: ptv2 train's defaults before per-task defaults",
         epochs=3.0, batch_size=32, prefix_len=16),
    # ---- classification ----------------------------------------------------------------------
    # SST-2 sentences are short: 4 of the 67,349 training sentences exceed 64 MiniLM tokens (the
    # longest is 66), so 64 halves the cost of 128 for the same inputs
    rule("sst2", ALL, "measured: SST-2 train.tsv token lengths (MiniLM WordPiece), max 66",
         max_seq_len=64),
    rule("sst2", PROMPT_METHODS, "measured: docs/RESULTS.md, SST-2 at 3,000 sentences: ptv2 "
         "0.8406 = finetune at lr 1e-2 x 3 epochs", lr=1e-2),
    rule("sst2", "finetune", "measured: docs/RESULTS.md, SST-2 at 3,000 sentences: finetune lr "
         "3e-5 x 3 epochs = 0.8406", lr=3e-5),
    rule("rte", PROMPT_METHODS, "official: the rte_bert script (bert-large-cased)",
         epochs=60.0, lr=1e-2, prefix_len=20, batch_size=32, max_seq_len=128),
    rule("boolq", PROMPT_METHODS, "official: the boolq_bert script (bert-large-cased)",
         epochs=100.0, lr=5e-3, prefix_len=40, batch_size=32, max_seq_len=128),
    # cb, mnli: no official script; the generic values apply
    # ---- tagging (official NER/SRL scripts do not apply a max length: the family's 256 with
    # windows stays) -----------------------------------------------------------------------
    rule("conll03", PROMPT_METHODS, "official: the conll03_roberta script (no BERT "
         "script)", epochs=30.0, lr=3e-2, prefix_len=11, batch_size=16),
    rule("conll04", PROMPT_METHODS, "official: the conll04_bert script "
         "(bert-large-uncased)", epochs=40.0, lr=2e-2, prefix_len=128, batch_size=32),
    rule("conll04", "ptv2", "measured: docs/RESULTS.md CoNLL-04, MiniLM P = 64 at lr 2e-2 "
         "(0.711 F1 after 20 epochs, still rising)", prefix_len=64),
    rule("conll04", "prompt", "measured: benchmarks/conll04_methods.sh prompt settings "
         "(docs/RESULTS.md)", lr=1e-2, prefix_len=16),
    rule("conll04", "ptv2", "measured: at these defaults --prefix-init activations reached "
         "0.7700 / 0.7736 best dev F1 vs random's 0.7568 / 0.7654 (seeds 42 / 1, "
         "benchmarks/conll04_seeds.yaml, docs/RESULTS.md)", prefix_init="activations"),
    rule("conll04", "ptv2", "measured: without prefix dropout ptv2 came within 1 point of "
         "finetune's best at epoch 14 / 10 instead of 17 / 13 and reached 0.7777 / 0.7733 "
         "instead of 0.7736 / 0.7670 (seeds 1 / 2; docs/RESULTS.md, CoNLL-04 time to "
         "quality)", prefix_dropout=0.0),
    rule("conll04", "ptv2", "measured: in batches of 8 ptv2 reached 0.7921 / 0.7883 best dev F1 "
         "instead of 0.7777 / 0.7733 with 32, ahead in every early epoch, and an epoch costs "
         "about a quarter less on CPU (less padding; seeds 1 / 2; docs/RESULTS.md, CoNLL-04 "
         "batch size)", batch_size=8),
    rule("conll04", "finetune", "measured: benchmarks/conll04_methods.sh lr; issue 13 cites "
         "0.781 F1 for finetune after 10-20 epochs at this scale", lr=5e-5, epochs=10.0),
    rule("conll04", "finetune", "measured: in batches of 8 fine-tuning reached 0.8110 / 0.8111 "
         "best dev F1 instead of 0.7614 / 0.7421 with 32 (seeds 1 / 2; 290 optimizer steps "
         "were too few at lr 5e-5; docs/RESULTS.md, CoNLL-04 batch size)", batch_size=8),
    rule("ontonotes", PROMPT_METHODS, "official: the ontonotes_bert script "
         "(bert-large-uncased)", epochs=30.0, lr=1e-2, prefix_len=16, batch_size=16),
    rule("conll05", PROMPT_METHODS, "official: the conll05_roberta script (no "
         "BERT script)", epochs=15.0, lr=6e-3, prefix_len=224, batch_size=16),
    rule("conll12", PROMPT_METHODS, "official: the conll12_roberta script (no "
         "BERT script)", epochs=45.0, lr=5e-3, prefix_len=64, batch_size=32),
    # ---- QA (official max length 384 = the family default) ----------------------------------
    rule("squad", PROMPT_METHODS, "official: the squad_roberta script (no BERT "
         "script)", epochs=30.0, lr=5e-3, prefix_len=16, batch_size=8),
    rule("squad_v2", PROMPT_METHODS, "official: the squad_v2_roberta script (no BERT "
         "script)", epochs=10.0, lr=5e-3, prefix_len=8, batch_size=8),
]


def lookup(task: str, method: str, name: str, rules: list[Rule] | None = None) -> Rule | None:
    """The rule that decides option ``name`` for ``task`` and ``method`` (None: no rule)."""
    best, best_key = None, None
    for index, r in enumerate(RULES if rules is None else rules):
        if name not in r.values:
            continue
        if (r.tasks and task not in r.tasks) or (r.methods and method not in r.methods):
            continue
        key = (bool(r.tasks), bool(r.methods), index)  # specificity, then table order
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


def resolve(args) -> list[dict]:
    """Fill every option of ``FIELDS`` that is None on ``args`` (a TrainArgs: neither flag nor
    YAML key set it) from the table, in place; returns what was filled, in ``FIELDS`` order, as
    ``{"name", "value", "source"}`` dicts (JSON-ready: the trainer logs ``vars(args)``).
    Options the user set are never touched."""
    applied = []
    for name in FIELDS:
        if getattr(args, name, 0) is not None:
            continue
        r = lookup(args.task, args.method, name)
        if r is None:
            if name in UNRULED:
                setattr(args, name, UNRULED[name])
            continue
        value, source = r.values[name], r.source
        if name == "prefix_init":
            conflict = prefix_init_conflict(args, value)
            if conflict:
                value, source = "random", f"{source}; random here: {conflict}"
        setattr(args, name, value)
        applied.append({"name": name, "value": value, "source": source})
    return applied


def is_task_default(args, name: str) -> bool:
    """Whether option ``name`` of ``args`` came from this table (the user did not set it)."""
    return any(d["name"] == name for d in getattr(args, "task_defaults", []))


def prefix_init_for_zero_stage(args, zero_stage: int) -> str | None:
    """Under ZeRO-3 (known to the trainer only) a task default ``prefix_init`` other than
    random becomes random; an explicit ``--prefix-init`` is left for ``check_prefix_init`` to
    refuse. Returns the line to log, or None."""
    if not is_task_default(args, "prefix_init"):
        return None
    conflict = prefix_init_conflict(args, args.prefix_init, zero_stage)
    if not conflict:
        return None
    kind, args.prefix_init = args.prefix_init, "random"
    return f"prefix_init: random, not the task's default {kind}: {conflict}"


def prefix_init_conflict(args, kind: str, zero_stage: int = 0) -> str | None:
    """Why ``--prefix-init kind`` cannot start the prompt of a run configured like ``args``,
    or None: ``prompts.init.check_prefix_init``'s refusal, which a user's explicit choice
    gets as an error and a task default as the reason it steps aside."""
    from .errors import UserError
    from .prompts.init import check_prefix_init

    try:
        check_prefix_init(kind, args.method, args.reparam, args.prompt_encoder, zero_stage,
                          init_prompt=getattr(args, "init_prompt", None))
    except UserError as e:
        return str(e)
    return None


def describe(applied: list[dict], method: str, max_steps: int | None = None) -> str:
    """One line for the log: the defaults a run got and their sources (options that do not
    matter for the run, the prompt length of a finetune run, epochs under --max-steps, are
    left out)."""
    shown = [a for a in applied
             if not (a["name"] == "prefix_len" and method == "finetune")
             and not (a["name"] == "epochs" and max_steps)]
    return "; ".join(f"{a['name']}={a['value']:g} ({a['source']})" if not isinstance(
        a["value"], str) else f"{a['name']}={a['value']} ({a['source']})" for a in shown)
