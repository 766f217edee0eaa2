"""GLM model configuration and the published size presets (THUDM GLM, 2021)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from glm.errors import GLMUserError


@dataclass
class GLMConfig:
    """Shape and regularisation of a GLM backbone.

    All published GLM sizes share one architecture (pre-LN transformer, fused q/k/v,
    tanh-GeLU MLP, tied LM logits, absolute + block position embeddings); only these
    numbers differ. `max_position_embeddings` is the number of positions a sequence may
    use; both position tables have `max_position_embeddings + 1` rows.
    """

    vocab_size: int = 50304
    hidden_size: int = 4096
    num_layers: int = 48
    num_attention_heads: int = 64
    max_position_embeddings: int = 1024
    intermediate_size: int | None = None  # None -> 4 * hidden_size
    layernorm_epsilon: float = 1e-5
    embedding_dropout: float = 0.1
    attention_dropout: float = 0.1
    output_dropout: float = 0.1
    init_std: float = 0.02
    tokenizer: str = "gpt2"  # "gpt2" | "bert-uncased" | "chinese-sp"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.hidden_size % self.num_attention_heads:
            raise GLMUserError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GLMConfig":
        """Build from a dict, accepting the hub `config.json` key names too."""
        aliases = {
            "num_hidden_layers": "num_layers",
            "max_sequence_length": "max_position_embeddings",
            "hidden_dropout": "output_dropout",
        }
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in d.items():
            key = aliases.get(key, key)
            if key in fields:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "GLMConfig":
        if name not in PRESETS:
            raise GLMUserError(f"unknown GLM preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: dict[str, GLMConfig] = {
    "glm-large": GLMConfig(vocab_size=30592, hidden_size=1024, num_layers=24,
                           num_attention_heads=16, max_position_embeddings=512,
                           tokenizer="bert-uncased"),
    "glm-2b": GLMConfig(vocab_size=50304, hidden_size=2048, num_layers=36,
                        num_attention_heads=32, max_position_embeddings=1024,
                        tokenizer="gpt2"),
    "glm-10b": GLMConfig(vocab_size=50304, hidden_size=4096, num_layers=48,
                         num_attention_heads=64, max_position_embeddings=1024,
                         tokenizer="gpt2"),
    "glm-10b-chinese": GLMConfig(vocab_size=50048, hidden_size=4096, num_layers=48,
                                 num_attention_heads=64, max_position_embeddings=1024,
                                 tokenizer="chinese-sp"),
}
