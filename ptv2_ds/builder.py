"""From configuration to a ready model: the one place that wires backbone, prompt and head."""
from __future__ import annotations

from .backbones import load_backbone
from .dropout import set_cpu_dropout
from .heads import resolve_auto_head
from .model import HeadSpec, PromptedModel, PromptSettings
from .tasks import Task

DEFAULT_LR = {"ptv2": 5e-3, "prompt": 1e-2, "finetune": 2e-5}


def learning_rate(args) -> float:
    """The rate a run trains at: ``--lr`` (or its per-task default), else the method's."""
    return args.lr if args.lr is not None else DEFAULT_LR[args.method]


def prompt_settings(args) -> PromptSettings:
    return PromptSettings(method=args.method, prefix_len=args.prefix_len, reparam=args.reparam,
                          prefix_hidden=args.prefix_hidden, prefix_dropout=args.prefix_dropout,
                          prefix_layers=args.prefix_layers, prompt_encoder=args.prompt_encoder)


def build_model(args, task: Task | None = None, *, num_outputs: int | None = None,
                ds_config: dict | None = None, tasks: dict[str, Task] | None = None
                ) -> PromptedModel:
    """Backbone + prompt + head for ``args`` (a ModelArgs-like object) and ``task``.

    The task decides which head ``--head`` means (a class head on [CLS], a per-token tag head,
    start/end span logits) and its width; without a task (``ptv2 params``) ``--head`` is a
    classification head with ``num_outputs`` classes. With a ZeRO-3 ``ds_config`` the backbone
    is built partitioned (``deepspeed.zero.Init``) and its weights are loaded into the shards;
    every rank must call this.

    Multi-task (``tasks``, name -> Task, instead of ``task``): one shared prompt and one head
    per task, each the head ``--head`` means for that task's family."""
    set_cpu_dropout(getattr(args, "cpu_dropout", "fast"))
    requested = args.head
    if requested == "auto":  # TrainArgs resolve it when made; a ModelArgs from Python here
        families = ([t.family for t in tasks.values()] if tasks is not None else
                    [task.family if task is not None else "classification"])
        requested, _ = resolve_auto_head(args.model, getattr(args, "model_path", None),
                                         families)
    if tasks is not None:
        kinds = {name: t.head_kind(requested) for name, t in tasks.items()}
        head = "verbalizer" if "verbalizer" in kinds.values() else next(iter(kinds.values()))
    else:
        head = task.head_kind(requested) if task is not None else requested
    backbone = load_backbone(args.model, model_path=getattr(args, "model_path", None),
                             with_lm_head=head == "verbalizer",
                             gradient_checkpointing=getattr(args, "gradient_checkpointing", False),
                             allow_unsafe_pickle=getattr(args, "allow_unsafe_pickle", False),
                             ds_config=ds_config)
    if getattr(args, "backbone_dropout", None) is not None:
        backbone.set_dropout(args.backbone_dropout)
    if tasks is not None:
        specs = {name: HeadSpec(kinds[name], t.num_outputs,
                                t.verbalizer_words(backbone) if kinds[name] == "verbalizer"
                                else None) for name, t in tasks.items()}
        model = PromptedModel(backbone, prompt_settings(args), heads=specs,
                              head_dropout=args.head_dropout)
        _register_cloze_weights(ds_config, backbone,
                                [model.heads[n] for n, k in kinds.items() if k == "verbalizer"],
                                set(kinds.values()))
        return model
    verbalizer = None
    if head == "verbalizer":  # the task's words (or the user's); without a task, the user's
        verbalizer = (task.verbalizer_words(backbone) if task is not None else
                      [w.strip() for w in (getattr(args, "verbalizer", None) or "").split(",")
                       if w.strip()])
    model = PromptedModel(backbone, prompt_settings(args),
                          num_outputs or task.num_outputs, head=head, verbalizer=verbalizer,
                          head_dropout=args.head_dropout)
    _register_cloze_weights(ds_config, backbone, [model.head], {head})
    return model


def _register_cloze_weights(ds_config, backbone, heads: list, kinds: set) -> None:
    if ds_config is not None and ds_config.get("zero_optimization", {}).get("stage") == 3 \
            and "verbalizer" in kinds and backbone.kind == "glm":
        import deepspeed

        # the cloze head multiplies by the tied word embeddings, a parameter of another
        # module: ZeRO-3 must gather it when the head runs
        for h in heads:
            deepspeed.zero.register_external_parameter(h, backbone.input_embeddings().weight)
