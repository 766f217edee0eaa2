"""From configuration to a ready model: the one place that wires backbone, prompt and head."""
from __future__ import annotations

from .backbones import load_backbone
from .model import PromptedModel, PromptSettings
from .tasks import ClassificationTask

DEFAULT_LR = {"ptv2": 5e-3, "prompt": 1e-2, "finetune": 2e-5}


def prompt_settings(args) -> PromptSettings:
    return PromptSettings(method=args.method, prefix_len=args.prefix_len, reparam=args.reparam,
                          prefix_hidden=args.prefix_hidden, prefix_dropout=args.prefix_dropout,
                          prefix_layers=args.prefix_layers, prompt_encoder=args.prompt_encoder)


def verbalizer_words(args, task: ClassificationTask, backbone) -> list[str] | None:
    if args.head != "verbalizer":
        return None
    if args.verbalizer:
        return [w.strip() for w in args.verbalizer.split(",")]
    if backbone.kind == "glm" and task.glm_verbalizer:
        return list(task.glm_verbalizer)
    return list(task.verbalizer)


def build_model(args, task: ClassificationTask, num_classes: int | None = None,
                ds_config: dict | None = None) -> PromptedModel:
    """Backbone + prompt + head for ``args`` (a ModelArgs-like object).

    With a ZeRO-3 ``ds_config`` the backbone is built partitioned (``deepspeed.zero.Init``)
    and its weights are loaded into the shards; every rank must call this."""
    backbone = load_backbone(args.model, model_path=getattr(args, "model_path", None),
                             with_lm_head=args.head == "verbalizer",
                             gradient_checkpointing=getattr(args, "gradient_checkpointing", False),
                             ds_config=ds_config)
    model = PromptedModel(backbone, prompt_settings(args),
                         num_classes or len(task.labels), head=args.head,
                         verbalizer=verbalizer_words(args, task, backbone),
                         head_dropout=args.head_dropout)
    if ds_config is not None and ds_config.get("zero_optimization", {}).get("stage") == 3 \
            and args.head == "verbalizer" and backbone.kind == "glm":
        import deepspeed

        # the cloze head multiplies by the tied word embeddings, a parameter of another
        # module: ZeRO-3 must gather it when the head runs
        deepspeed.zero.register_external_parameter(model.head,
                                                   backbone.input_embeddings().weight)
    return model


def cloze_template(args, task: ClassificationTask) -> str | None:
    if args.head != "verbalizer":
        return None
    return args.template or task.cloze_template
