"""Per-GPU memory planner behind ``ptv2 plan``: will this run fit, and why (not)?

``plan(PlanArgs)`` adds up, per GPU and in bytes, everything a P-Tuning v2 / prompt / fine-tuning
run keeps on the device under DeepSpeed: the frozen weights (or their ZeRO-3 shard), the
weights ZeRO-3 gathers while computing, the trainable parameters with their gradients and
optimizer state, the activations (with or without activation checkpointing, with the P extra
prefix keys per layer), the prefix keys/values themselves, the verbalizer logits, DeepSpeed's
communication buffers and a fixed CUDA overhead. ``format_plan`` prints each term with its
formula; ``run`` prints it and returns the exit code (0 fits, 1 does not fit).

Nothing is allocated: shapes come from ``glm.config.PRESETS``, a local ``config.json``, or a
small built-in table of the common BERT/RoBERTa hub models. docs/planner.md gives every formula
and assumption and compares the model-state terms with DeepSpeed's own estimators.

Symbols (as printed): N parameters, W = nodes x GPUs per node (the ZeRO world size), e bytes per
16-bit (2) or fp32 (4) element, L layers, H hidden, a heads, I MLP width, V vocabulary, S tokens
per example, P prefix length, B micro-batch, n_sel layers with a prefix.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import textwrap
from dataclasses import dataclass, field

from .config import ModelArgs, opt
from .errors import UserError

GiB = 2 ** 30

EXIT_FITS = 0
EXIT_DOES_NOT_FIT = 1


# ---------------------------------------------------------------------------------------------
# arguments

# ``ptv2 train`` runs without activation checkpointing unless --gradient-checkpointing is given;
# the plan must assume the same, or it can say "fits" for a run that then runs out of memory
TRAIN_GRADIENT_CHECKPOINTING: bool = next(
    f.default for f in dataclasses.fields(ModelArgs) if f.name == "gradient_checkpointing")


@dataclass
class PlanArgs:
    model: str = opt("glm-10b",
                     "a GLM preset (glm-large, glm-2b, glm-10b, glm-10b-chinese), a local model "
                     "directory with config.json, or bert-base-uncased / bert-large-uncased / "
                     "roberta-base / roberta-large (shapes built in, no download)")
    nodes: int = opt(1, "number of nodes")
    gpus_per_node: int = opt(8, "GPUs per node")
    gpu_mem: str = opt("40GB", "memory per GPU: 40GB = 40*10^9 bytes, 80GiB = 80*2^30 bytes; "
                               "a bare K/M/G/T (24G) means KiB/MiB/GiB/TiB")
    seq_len: int = opt(256, "tokens per example S (the --max-seq-len of training)")
    micro_batch: int = opt(4, "micro-batch per GPU B (the --batch-size of training)")
    method: str = opt("ptv2", "ptv2: deep prompts on a frozen backbone; prompt: input-layer "
                              "prompt only (frozen); finetune: train everything",
                      ["ptv2", "prompt", "finetune"])
    prefix_len: int = opt(16, "prompt length P")
    prefix_layers: str = opt("all", "layers (0-based) that get a prefix: all, 16-23, 0,5,11, "
                                    "last:8")
    reparam: str = opt("embedding", "ptv2 prefix parameterisation", ["embedding", "mlp"])
    prefix_hidden: int = opt(512, "inner width of the --reparam mlp prefix encoder")
    prompt_encoder: str = opt("none", "--method prompt only: none, mlp or lstm",
                              ["none", "mlp", "lstm"])
    head: str = opt("linear", "linear (GLM: its tanh pooler head), mean (Linear on the mean "
                              "token state), pooler, or verbalizer (the backbone's LM head at "
                              "the [MASK])", ["linear", "mean", "pooler", "verbalizer"])
    num_classes: int = opt(2, "classes of the head")
    precision: str = opt("fp16", "fp16 / bf16 (16-bit weights and activations, fp32 master "
                                 "weights in the optimizer) or fp32", ["fp16", "bf16", "fp32"])
    zero_stage: int = opt(3, "DeepSpeed ZeRO stage (3 shards the frozen weights too)",
                          [0, 1, 2, 3])
    offload: bool = opt(False, "ZeRO-3: offload parameters and optimizer state to CPU memory "
                               "(ZeRO-1/2: the optimizer state only)")
    gradient_checkpointing: bool = opt(TRAIN_GRADIENT_CHECKPOINTING,
                                       "activation checkpointing (recompute each layer in the "
                                       "backward pass); the default follows `ptv2 train`'s "
                                       "--gradient-checkpointing, so plan and train agree")
    backbone_dropout: float | None = opt(None, "as ptv2 train's --backbone-dropout: 0 = no "
                                               "dropout inside the backbone, so no masks are "
                                               "stored; default: on (the checkpoint's)")
    attention: str = opt("sdpa", "attention kernel: sdpa (memory-efficient, stores no "
                                 "S x (S+P) scores; the toolkit's default) or explicit "
                                 "(THUDM's arithmetic, stores them)", ["sdpa", "explicit"])
    overhead: str = opt("1.5GiB", "fixed per-GPU reserve for the CUDA context, NCCL, cuBLAS "
                                  "workspaces and allocator fragmentation")
    accelerator: str = opt("gpu", "where the ranks compute: gpu, or cpu (DS_ACCELERATOR=cpu; "
                                  "then every per-GPU term lives in host memory and "
                                  "--gpus-per-node means ranks per node)", ["gpu", "cpu"])
    host_mem: str = opt("none", "host (CPU) memory per node to check the host view against "
                                "(e.g. 512GB); none: print the host view without a verdict")
    host_baseline: str = opt("1GiB", "host memory of one rank's process before any weights: "
                                     "Python, torch, DeepSpeed, tokenizer (measured ~0.9-1.0 "
                                     "GiB on CPU)")
    ds_config: str | None = opt(None, "DeepSpeed JSON to read the ZeRO bucket / live-parameter "
                                      "settings from (default: the values of "
                                      "ds_configs/zero3_fp16.json, zero2_fp16.json for ZeRO-1/2)")


# ---------------------------------------------------------------------------------------------
# memory sizes

_UNITS = {"": None, "b": 1,
          "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40,
          "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def parse_mem(text: str | int | float) -> int:
    """Bytes in a memory size.

    ``40GB`` = 40 * 10^9 (SI: kB, MB, GB, TB), ``80GiB`` = 80 * 2^30 (IEC: KiB, MiB, GiB,
    TiB), and a bare ``24G`` (K, M, G, T, as Slurm and nvidia-smi write them) = 24 * 2^30.
    Case does not matter; decimals and a space before the unit are fine. A number without a
    unit is refused, since "40" could mean either.
    """
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"cannot read memory size {text!r}: write e.g. 40GB (40*10^9 bytes), "
                         "80GiB (80*2^30 bytes) or 24G (= 24GiB)")
    unit = _UNITS[m.group(2).lower()]
    if unit is None:
        raise UserError(f"memory size {text!r} has no unit: write {m.group(1)}GB (10^9 bytes) "
                         f"or {m.group(1)}GiB (2^30 bytes)")
    value = int(round(float(m.group(1)) * unit))
    if value <= 0:
        raise UserError(f"memory size {text!r} must be positive")
    return value


def gib(n: float) -> float:
    return n / GiB


# ---------------------------------------------------------------------------------------------
# model shapes

# Hub models whose shapes are built in, so that planning needs no download.
HUB_SHAPES = {
    "bert-base-uncased": dict(family="bert", vocab_size=30522, hidden_size=768, num_layers=12,
                              num_heads=12, intermediate_size=3072, max_positions=512,
                              type_vocab_size=2),
    "bert-large-uncased": dict(family="bert", vocab_size=30522, hidden_size=1024,
                               num_layers=24, num_heads=16, intermediate_size=4096,
                               max_positions=512, type_vocab_size=2),
    "roberta-base": dict(family="roberta", vocab_size=50265, hidden_size=768, num_layers=12,
                         num_heads=12, intermediate_size=3072, max_positions=514,
                         type_vocab_size=1),
    "roberta-large": dict(family="roberta", vocab_size=50265, hidden_size=1024, num_layers=24,
                          num_heads=16, intermediate_size=4096, max_positions=514,
                          type_vocab_size=1),
}
HUB_ALIASES = {"google-bert/bert-base-uncased": "bert-base-uncased",
               "google-bert/bert-large-uncased": "bert-large-uncased",
               "facebookai/roberta-base": "roberta-base",
               "facebookai/roberta-large": "roberta-large"}

Module = tuple[str, list[int]]  # (module name, element count of each parameter it owns)


@dataclass(frozen=True)
class ModelShape:
    """The numbers the planner needs about a backbone.

    ``max_positions`` is the config's ``max_position_embeddings`` (GLM's two position tables
    have one row more). ``family`` is ``glm`` or the Hugging Face ``model_type``.
    """

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int = 0

    # -- parameters, module by module (the granularity ZeRO-3 gathers at) --------------------
    def embedding_modules(self) -> list[Module]:
        V, H = self.vocab_size, self.hidden_size
        if self.family == "glm":
            rows = self.max_positions + 1
            return [("word_embeddings", [V * H]),
                    ("transformer.position_embeddings", [rows * H]),
                    ("transformer.block_position_embeddings", [rows * H])]
        return [("embeddings.word_embeddings", [V * H]),
                ("embeddings.position_embeddings", [self.max_positions * H]),
                ("embeddings.token_type_embeddings", [self.type_vocab_size * H]),
                ("embeddings.LayerNorm", [H, H])]

    def layer_modules(self) -> list[Module]:
        """One transformer layer (all layers are alike)."""
        H, I = self.hidden_size, self.intermediate_size
        if self.family == "glm":
            return [("input_layernorm", [H, H]),
                    ("attention.query_key_value", [3 * H * H, 3 * H]),
                    ("attention.dense", [H * H, H]),
                    ("post_attention_layernorm", [H, H]),
                    ("mlp.dense_h_to_4h", [I * H, I]),
                    ("mlp.dense_4h_to_h", [H * I, H])]
        return [("attention.self.query", [H * H, H]), ("attention.self.key", [H * H, H]),
                ("attention.self.value", [H * H, H]), ("attention.output.dense", [H * H, H]),
                ("attention.output.LayerNorm", [H, H]), ("intermediate.dense", [I * H, I]),
                ("output.dense", [H * I, H]), ("output.LayerNorm", [H, H])]

    def final_modules(self) -> list[Module]:
        H = self.hidden_size
        return [("transformer.final_layernorm", [H, H])] if self.family == "glm" else []

    def lm_head_modules(self) -> list[Module]:
        """Extra parameters of the LM head loaded for ``--head verbalizer``. GLM's logits use the
        tied word embeddings (nothing extra); BERT/RoBERTa heads add a dense + LayerNorm and an
        output bias (the decoder weight is tied to the word embeddings)."""
        if self.family == "glm":
            return []
        H, V = self.hidden_size, self.vocab_size
        return [("lm_head.dense", [H * H, H]), ("lm_head.layer_norm", [H, H]),
                ("lm_head", [V])]

    def modules(self, with_lm_head: bool = False) -> list[Module]:
        """Every module that owns parameters, layers expanded."""
        layers = [(f"layers.{i}.{name}", sizes) for i in range(self.num_layers)
                  for name, sizes in self.layer_modules()]
        return (self.embedding_modules() + layers + self.final_modules()
                + (self.lm_head_modules() if with_lm_head else []))

    def num_parameters(self, with_lm_head: bool = False) -> int:
        return sum(sum(sizes) for _, sizes in self.modules(with_lm_head))

    @property
    def layer_parameters(self) -> int:
        return sum(sum(sizes) for _, sizes in self.layer_modules())

    @property
    def word_embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size


def model_shape(model: str) -> ModelShape:
    """Shape of ``--model``: a GLM preset, a local directory (config.json), or a built-in hub
    name. Raises ValueError with the accepted forms otherwise."""
    from glm.config import PRESETS, GLMConfig

    if model in PRESETS:
        return _glm_shape(model, PRESETS[model])
    key = HUB_ALIASES.get(model.lower(), model.lower())
    if key in HUB_SHAPES:
        return ModelShape(name=model, **HUB_SHAPES[key])
    path = model
    if not os.path.isdir(path):
        from .backbones import resolve_model_path  # packages that ship a model offline
        path = resolve_model_path(model)
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        if os.path.isdir(path):
            raise UserError(f"{model}: no config.json to read the shape from (for a THUDM "
                             "release directory pass the preset name, e.g. --model glm-10b)")
        raise UserError(
            f"unknown model {model!r}: use a GLM preset ({', '.join(sorted(PRESETS))}), a local "
            f"directory with config.json, or one of {', '.join(sorted(HUB_SHAPES))}")
    with open(config_file) as f:
        config = json.load(f)
    from .backbones.glm import is_glm

    if is_glm(path):
        return _glm_shape(model, GLMConfig.from_dict(config))
    kind = config.get("model_type")
    if kind not in ("bert", "roberta", "xlm-roberta"):
        raise UserError(f"{model}: model type {kind!r} is not supported (bert, roberta, "
                         "xlm-roberta, or a GLM)")
    H = config["hidden_size"]
    return ModelShape(name=model, family=kind, vocab_size=config["vocab_size"], hidden_size=H,
                      num_layers=config["num_hidden_layers"],
                      num_heads=config["num_attention_heads"],
                      intermediate_size=config.get("intermediate_size", 4 * H),
                      max_positions=config["max_position_embeddings"],
                      type_vocab_size=config.get("type_vocab_size", 2))


def _glm_shape(name: str, c) -> ModelShape:
    return ModelShape(name=name, family="glm", vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                      num_layers=c.num_layers, num_heads=c.num_attention_heads,
                      intermediate_size=c.intermediate_size,
                      max_positions=c.max_position_embeddings)


def head_kind(head: str, shape: ModelShape) -> str:
    """The head the toolkit builds: on GLM ``linear`` means GLM's own pooler head."""
    return "pooler" if head == "linear" and shape.family == "glm" else head


def head_modules(head: str, shape: ModelShape, num_classes: int) -> list[Module]:
    H, C = shape.hidden_size, num_classes
    kind = head_kind(head, shape)
    if kind in ("linear", "mean"):
        return [("head.classifier", [C * H, C])]
    if kind == "pooler":
        return [("head.dense", [H * H, H]), ("head.classifier", [C * H, C])]
    return []  # verbalizer: the backbone's LM head, no parameters of its own


def prompt_modules(args: PlanArgs, shape: ModelShape, n_sel: int) -> list[Module]:
    """Parameters of the deep prompt (ptv2) or input prompt (prompt), as built by
    ``ptv2_ds.prompts.DeepPrompt`` / ``InputPrompt``."""
    H, P = shape.hidden_size, args.prefix_len
    if args.method == "ptv2":
        out = n_sel * 2 * H
        if args.reparam == "embedding":
            return [("deep_prompt", [P * out])]
        h2 = args.prefix_hidden
        return [("deep_prompt", [P * H]), ("deep_prompt.mlp.0", [H * h2, h2]),
                ("deep_prompt.mlp.2", [h2 * out, out])]
    if args.method == "prompt":
        mods: list[Module] = [("input_prompt", [P * H])]
        if args.prompt_encoder == "lstm":
            hid = H // 2
            sizes = []
            for layer_in in (H, 2 * hid):                 # 2 layers, bidirectional
                sizes += [4 * hid * layer_in, 4 * hid * hid, 4 * hid, 4 * hid] * 2
            mods.append(("input_prompt.lstm", sizes))
        if args.prompt_encoder in ("mlp", "lstm"):
            first_in = H if args.prompt_encoder == "mlp" else 2 * (H // 2)
            mods += [("input_prompt.mlp.0", [H * first_in, H]),
                     ("input_prompt.mlp.2", [H * H, H])]
        return mods
    return []


# ---------------------------------------------------------------------------------------------
# DeepSpeed settings that size buffers

# The values in ds_configs/zero3_fp16.json (stage 3) and ds_configs/zero2_fp16.json (stages
# 1-2); tests check that they still agree with those files.
ZERO3_DEFAULTS = dict(reduce_bucket_size=5e7, stage3_prefetch_bucket_size=5e7,
                      stage3_param_persistence_threshold=1e5, stage3_max_live_parameters=1e9,
                      stage3_max_reuse_distance=1e9, overlap_comm=True, contiguous_gradients=True)
ZERO2_DEFAULTS = dict(reduce_bucket_size=5e8, allgather_bucket_size=5e8, overlap_comm=True,
                      contiguous_gradients=True)


def zero_settings(args: PlanArgs) -> dict:
    """The ZeRO knobs the planner uses: built-in defaults, overridden by --ds-config."""
    values = dict(ZERO3_DEFAULTS if args.zero_stage == 3 else ZERO2_DEFAULTS)
    if args.ds_config:
        try:
            with open(args.ds_config) as f:
                zero = json.load(f).get("zero_optimization", {}) or {}
        except OSError as e:
            raise UserError(f"cannot read --ds-config {args.ds_config}: {e}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"--ds-config {args.ds_config} is not valid JSON: {e}") from None
        for key in values:
            value = zero.get(key)
            if isinstance(value, bool) or isinstance(value, (int, float)):
                values[key] = value
    return values


# ---------------------------------------------------------------------------------------------
# activations


def layer_activation_bytes(*, s: int, p: int, b: int, h: int, inter: int, heads: int, e: int,
                           attention: str = "sdpa", weights_trainable: bool = False,
                           dropout: bool = True) -> int:
    """Bytes autograd keeps for one pre-LN transformer layer's backward pass.

    s queries, s + p keys (p prefix positions), b batch, h hidden, inter MLP width, heads
    attention heads, e bytes per element. Counted tensor by tensor as PyTorch saves them
    (checked against ``saved_tensors_hooks`` in the tests):

      both      2*s*b*h*e   the two LayerNorm inputs
                s*b*inter*e the GeLU input
                2*s*b*h     the two output-dropout masks (1 byte each, when dropout is on)
      sdpa      3*s*b*h*e   the fused q|k|v output (q, k, v are views of it)
                + 2*(s+p)*b*h*e   the concatenated prefix+real K and V (only when p > 0)
                + s*b*h*e   the attention output, + 4*heads*b*s its fp32 log-sum-exp
                + b*s*(s+p)*e     the boolean mask turned into an additive bias
      explicit  s*b*h*e + 2*(s+p)*b*h*e   q, K, V (copied for the batched matmuls)
                + heads*b*s*(s+p)*(2e+1)  softmax output, dropout mask, dropout output
                  (without dropout: heads*b*s*(s+p)*e)
                + b*s*(s+p)*e     the mask as a float
      trainable weights add what their gradients need: the inputs of the four Linears
                (q|k|v input, dense input, MLP input: 3*s*b*h*e, minus the dense input with
                sdpa, which is the stored attention output; 4h->h input s*b*inter*e).

    With e = 2, p = 0, dropout, explicit attention and trainable weights this is Korthikanti
    et al. (2022)'s s*b*h*(34 + 5*a*s/h) (plus the float mask, which Megatron's fused kernel
    avoids).
    """
    k = s + p
    total = 2 * s * b * h * e + s * b * inter * e
    if dropout:
        total += 2 * s * b * h
    if attention == "sdpa":
        total += 3 * s * b * h * e + (2 * k * b * h * e if p else 0)
        total += s * b * h * e + 4 * heads * b * s + b * s * k * e
        linear_inputs = 2 * s * b * h * e
    elif attention == "explicit":
        total += s * b * h * e + 2 * k * b * h * e
        total += heads * b * s * k * ((2 * e + 1) if dropout else e) + b * s * k * e
        linear_inputs = 3 * s * b * h * e
    else:
        raise UserError(f"attention must be sdpa or explicit, got {attention!r}")
    if weights_trainable:
        total += linear_inputs + s * b * inter * e
    return total


@dataclass
class Activations:
    """Activation memory for the whole backbone (bytes)."""

    stored: int          # kept between the forward and the backward pass
    recompute: int       # one layer's saved tensors rebuilt during backward (checkpointing)
    transient: int       # gradients in flight during backward
    other: int           # embeddings / final LayerNorm / masks outside the layers
    grad_layers: int     # layers autograd goes through
    per_layer_max: int

    @property
    def total(self) -> int:
        return self.stored + self.recompute + self.transient + self.other


def activation_memory(shape: ModelShape, args: PlanArgs, checkpointing: bool,
                      layers: tuple[int, ...] | None = None) -> Activations:
    """Activations for ``args`` on ``shape``. ``layers``: layers with a prefix (ptv2)."""
    e = element_bytes(args.precision)
    b, h, a, inter = args.micro_batch, shape.hidden_size, shape.num_heads, shape.intermediate_size
    P = args.prefix_len
    s = args.seq_len + (P if args.method == "prompt" else 0)   # shallow prompt = extra tokens
    selected = set(layers or ()) if args.method == "ptv2" else set()
    trainable = args.method == "finetune"
    dropout = args.backbone_dropout != 0
    # Autograd only goes through layers whose input or weights need a gradient: with a frozen
    # backbone and prefixes only in the top layers, the layers below store nothing.
    if args.method == "ptv2":
        first = min(selected) if selected and P > 0 else shape.num_layers
    else:
        first = 0
    grad_layers = list(range(first, shape.num_layers))
    per_layer = [layer_activation_bytes(s=s, p=P if i in selected else 0, b=b, h=h,
                                        inter=inter, heads=a, e=e, attention=args.attention,
                                        weights_trainable=trainable, dropout=dropout)
                 for i in grad_layers]
    per_layer_max = max(per_layer, default=0)
    if not grad_layers:
        return Activations(0, 0, 0, 0, 0, 0)
    if checkpointing:
        stored = len(grad_layers) * s * b * h * e       # each checkpointed layer's input
        recompute = per_layer_max
    else:
        stored = sum(per_layer)
        recompute = 0
    # backward: the hidden-state gradient and the largest gradient inside a layer
    inner = 2 * s * b * inter * e
    if args.attention == "explicit":
        inner = max(inner, 2 * a * b * s * (s + (P if selected else 0)) * e)
    transient = 2 * s * b * h * e + inner
    # outside the layers: the final LayerNorm's input and output (the head's [CLS] slice is a
    # view that keeps the whole output alive), the embedding-dropout mask (only when the
    # embeddings' output needs a gradient), the boolean masks [B,1,S,S] and [B,1,S,P+S]
    other = 2 * s * b * h * e + b * s * s + (b * s * (s + P) if selected and P else 0)
    if args.method in ("prompt", "finetune") and dropout:
        other += s * b * h
    return Activations(stored, recompute, transient, other, len(grad_layers), per_layer_max)


def element_bytes(precision: str) -> int:
    if precision not in ("fp16", "bf16", "fp32"):
        raise UserError(f"precision must be fp16, bf16 or fp32, got {precision!r}")
    return 4 if precision == "fp32" else 2


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class Term:
    key: str
    label: str
    bytes: int
    formula: str


@dataclass
class Plan:
    """Per-GPU memory, every term in bytes. ``fits``: total <= budget."""

    args: PlanArgs
    shape: ModelShape
    world_size: int
    element_bytes: int
    budget: int
    # parameter counts
    backbone_params: int
    trainable_params: int
    frozen_params: int
    prefix_layer_count: int
    # the terms (bytes per GPU)
    frozen_weights: int
    gathered_working_set: int
    trainable_states: int
    activations: int
    prefix_kv: int
    head_logits: int
    zero_buffers: int
    cuda_overhead: int
    total: int
    fits: bool
    # for comparison / information
    activations_checkpointed: int
    activations_full: int
    host_bytes_per_node: int
    host_bytes_per_rank: int = 0
    host_budget: int | None = None  # --host-mem in bytes, None without one
    host_terms: list[Term] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    symbols: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)

    @property
    def model_states(self) -> int:
        """Weights + gradients + optimizer state on the GPU (what DeepSpeed's
        ``estimate_zero*_model_states_mem_needs`` estimate): frozen weights, the ZeRO-3
        gathered working set, and the trainable parameters' states."""
        return self.frozen_weights + self.gathered_working_set + self.trainable_states

    @property
    def headroom(self) -> int:
        return self.budget - self.total

    @property
    def host_fits(self) -> bool | None:
        """Host memory per node within --host-mem (None: no --host-mem given)."""
        if self.host_budget is None:
            return None
        return self.host_bytes_per_node <= self.host_budget

    @property
    def verdict(self) -> bool:
        """The plan's answer: the GPU check (GPU ranks) and the host check (when --host-mem
        is given); a CPU run without --host-mem has nothing to check and passes."""
        checks = [self.host_fits] + ([self.fits] if self.args.accelerator == "gpu" else [])
        return all(c for c in checks if c is not None)


def _bytes_per_trainable(e: int) -> dict[str, int]:
    """Bytes per trainable parameter, by component (DeepSpeed mixed precision: the 16-bit
    weight and gradient, an fp32 master copy, Adam's m and v, and the fp32 gradient the
    optimizer step works on; fp32 training has no master copy and no second gradient)."""
    if e == 2:
        return {"w16": 2, "g16": 2, "master": 4, "adam": 8, "g32": 4}
    return {"w16": 4, "g16": 4, "master": 0, "adam": 8, "g32": 0}


_COMPONENT_NAMES = {"w16": "weight", "g16": "grad", "master": "fp32 master",
                    "adam": "Adam m+v", "g32": "fp32 grad"}


def plan(args: PlanArgs, shape: ModelShape | None = None) -> Plan:
    """The per-GPU memory plan for ``args`` (``shape`` overrides the one read from
    ``args.model``)."""
    return _plan(args, shape, suggest=True)


def _validate(args: PlanArgs) -> None:
    for name in ("nodes", "gpus_per_node", "seq_len", "micro_batch"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.method not in ("ptv2", "prompt", "finetune"):
        raise UserError(f"--method must be ptv2, prompt or finetune, got {args.method!r}")
    if args.prefix_len < 0 or (args.method == "prompt" and args.prefix_len < 1):
        raise UserError(f"--prefix-len must be >= {1 if args.method == 'prompt' else 0}, "
                         f"got {args.prefix_len}")
    if args.zero_stage not in (0, 1, 2, 3):
        raise UserError(f"--zero-stage must be 0, 1, 2 or 3, got {args.zero_stage}")
    if args.offload and args.zero_stage == 0:
        raise UserError("--offload needs ZeRO (stage 1-3; parameter offload needs stage 3)")
    if args.reparam not in ("embedding", "mlp"):
        raise UserError(f"--reparam must be embedding or mlp, got {args.reparam!r}")
    if args.head not in ("linear", "mean", "pooler", "verbalizer"):
        raise UserError(f"--head must be linear, mean, pooler or verbalizer, got {args.head!r}")
    if args.attention not in ("sdpa", "explicit"):
        raise UserError(f"--attention must be sdpa or explicit, got {args.attention!r}")
    if args.num_classes < 1:
        raise UserError(f"--num-classes must be >= 1, got {args.num_classes}")
    if args.accelerator not in ("gpu", "cpu"):
        raise UserError(f"--accelerator must be gpu or cpu, got {args.accelerator!r}")
    if args.accelerator == "cpu" and args.offload:
        raise UserError("--offload moves state from the GPU to the CPU; with --accelerator cpu "
                        "everything is on the CPU already")


@dataclass
class _Sizes:
    """What every term of one plan reads: the run's settings and its parameter counts
    (``N_*`` in elements; ``*_small``: at most stage3_param_persistence_threshold elements,
    kept whole on every rank under ZeRO-3; ``*_part``: the rest, partitioned W ways)."""

    args: PlanArgs
    shape: ModelShape
    e: int                      # bytes per element of weights and activations
    W: int                      # ranks
    zs: dict                    # ZeRO settings
    layers: tuple               # prefixed layers (ptv2)
    with_lm_head: bool
    trainable_mods: list
    N_backbone: int
    N_frozen: int
    N_train: int
    thr: float
    Nf_small: int
    Nt_small: int

    @property
    def stage(self) -> int:
        return self.args.zero_stage

    @property
    def offload(self) -> bool:
        return self.args.offload

    @property
    def n_sel(self) -> int:
        return len(self.layers)

    @property
    def Nf_part(self) -> int:
        return self.N_frozen - self.Nf_small

    @property
    def Nt_part(self) -> int:
        return self.N_train - self.Nt_small

    @property
    def largest_trainable(self) -> int:
        return max((sum(sizes) for _, sizes in self.trainable_mods), default=0)


def _count(mods, keep=lambda n: True) -> int:
    return sum(n for _, sizes in mods for n in sizes if keep(n))


def _sizes(args: PlanArgs, shape: ModelShape) -> _Sizes:
    from .prompts import parse_prefix_layers

    layers = tuple(parse_prefix_layers(args.prefix_layers, shape.num_layers)) \
        if args.method == "ptv2" else ()
    with_lm_head = args.head == "verbalizer"
    backbone = shape.modules(with_lm_head)
    extra = prompt_modules(args, shape, len(layers)) + head_modules(args.head, shape,
                                                                  args.num_classes)
    if args.method == "finetune":
        frozen_mods, trainable_mods = [], backbone + extra
    else:
        frozen_mods, trainable_mods = backbone, extra
    zs = zero_settings(args)
    # ZeRO-3 keeps parameters of <= stage3_param_persistence_threshold elements whole on
    # every GPU (biases, LayerNorms); everything else is partitioned W ways.
    thr = zs.get("stage3_param_persistence_threshold", 0) if args.zero_stage == 3 else 0
    small = (lambda n: n <= thr)
    return _Sizes(args=args, shape=shape, e=element_bytes(args.precision),
                W=args.nodes * args.gpus_per_node, zs=zs, layers=layers,
                with_lm_head=with_lm_head, trainable_mods=trainable_mods,
                N_backbone=_count(backbone), N_frozen=_count(frozen_mods),
                N_train=_count(trainable_mods), thr=thr, Nf_small=_count(frozen_mods, small),
                Nt_small=_count(trainable_mods, small))


def _plan(args: PlanArgs, shape: ModelShape | None, suggest: bool) -> Plan:
    _validate(args)
    shape = shape or model_shape(args.model)
    r = _sizes(args, shape)
    on_cpu = args.accelerator == "cpu"
    overhead = 0 if on_cpu else parse_mem(args.overhead)
    notes: list[str] = []
    act, act_ck, act_full = _activations(r)
    terms = [_frozen_term(r), _gathered_term(r, notes), _trainable_term(r),
             _activation_term(r, act, act_ck, act_full, notes), _prefix_term(r),
             _head_term(r), _buffer_term(r),
             Term("cuda_overhead", "CUDA context + allocator", overhead,
                  "none: the ranks compute on the CPU" if on_cpu else
                  f"fixed reserve (--overhead {args.overhead}): context, NCCL, cuBLAS "
                  "workspace, fragmentation")]
    total = sum(t.bytes for t in terms)
    budget = parse_mem(args.gpu_mem)
    fits = total <= budget

    # host memory (not part of the GPU budget)
    host_terms = host_memory_terms(args, shape, r.W, r.e, total, _offloaded_bytes(r),
                                   r.N_backbone)
    host_rank = sum(t.bytes for t in host_terms)

    used = args.seq_len + (args.prefix_len if args.method == "prompt" else 0)
    if used > shape.max_positions:
        notes.append(f"warning: {used} positions exceed the model's {shape.max_positions} "
                     "(max_position_embeddings)")
    if args.ds_config:
        notes.append(f"ZeRO buffer / live-parameter settings read from {args.ds_config}")
    notes.append(("dropout is assumed on (1-byte masks, as CUDA's fused dropout stores them)"
                  if args.backbone_dropout != 0 else "no dropout inside the backbone "
                  "(--backbone-dropout 0): no masks stored")
                 + "; terms are summed, so the total is an upper bound on the peak")

    value = {t.key: t.bytes for t in terms}
    result = Plan(args=args, shape=shape, world_size=r.W, element_bytes=r.e, budget=budget,
                  backbone_params=r.N_backbone, trainable_params=r.N_train,
                  frozen_params=r.N_frozen, prefix_layer_count=r.n_sel,
                  frozen_weights=value["frozen_weights"],
                  gathered_working_set=value["gathered_working_set"],
                  trainable_states=value["trainable_states"], activations=act.total,
                  prefix_kv=value["prefix_kv"], head_logits=value["head_logits"],
                  zero_buffers=value["zero_buffers"], cuda_overhead=overhead, total=total,
                  fits=fits, activations_checkpointed=act_ck.total,
                  activations_full=act_full.total,
                  host_bytes_per_node=host_rank * args.gpus_per_node,
                  host_bytes_per_rank=host_rank,
                  host_budget=None if args.host_mem == "none" else parse_mem(args.host_mem),
                  host_terms=host_terms, terms=terms, symbols=_symbols(r, act), notes=notes)
    if suggest and not fits and not on_cpu:
        result.suggestions = _suggestions(args, shape, result)
    return result


def _frozen_term(r: _Sizes) -> Term:
    if r.N_frozen == 0:
        frozen = 0
        formula = "none: every parameter trains (see trainable states)"
    elif r.stage < 3:
        frozen = r.e * r.N_frozen
        formula = f"N_frozen·e, whole on every GPU under ZeRO-{r.stage}"
    elif r.offload:
        frozen = r.e * r.Nf_small
        formula = ("N_frozen_small·e: offloaded to CPU, only the parameters "
                   f"<= {r.thr:.0e} elements stay on the GPU")
    else:
        frozen = r.e * r.Nf_small + _ceil_div(r.e * r.Nf_part, r.W)
        formula = (f"N_frozen_part·e/W + N_frozen_small·e (params <= {r.thr:.0e} elements "
                   "are not partitioned)")
    return Term("frozen_weights", "frozen weights", frozen, formula)


def _gathered_term(r: _Sizes, notes: list[str]) -> Term:
    """ZeRO-3's gathered working set (appends its explanation to ``notes``)."""
    if r.stage != 3:
        return Term("gathered_working_set", "ZeRO-3 gathered working set", 0,
                    f"none under ZeRO-{r.stage} (weights are whole)")
    zs, e = r.zs, r.e
    floor = r.shape.word_embedding_parameters + 2 * r.shape.layer_parameters
    live = int(zs["stage3_max_live_parameters"])
    working = min(r.Nf_part + r.Nt_part, max(floor, live))
    # A gathered parameter is a fresh full-size buffer next to this GPU's shard; only on a
    # single GPU without offload does DeepSpeed alias the shard instead of gathering.
    aliased = r.W == 1 and not r.offload
    gathered = (0 if aliased else e * working) + e * r.largest_trainable
    formula = (("e·min(N_part, max(V·H + 2·layer, max_live))" if not aliased else
                "W = 1: the 'gathered' weights alias the shard, nothing extra")
               + " + e·largest trainable module (its full gradient before "
                 "reduce-scatter)")
    notes.append(
        "gathered working set: on one GPU without offload the gathered weights alias the "
        "shard (nothing extra)" if aliased else
        f"gathered working set: ZeRO-3 materialises the module it is computing plus "
        f"prefetched ones (stage3_prefetch_bucket_size {zs['stage3_prefetch_bucket_size']:.0e}"
        f" elements) and defers releasing what is reused within stage3_max_reuse_distance "
        f"({zs['stage3_max_reuse_distance']:.0e}), up to about stage3_max_live_parameters "
        f"({live:.0e}) elements; never less than the word embeddings + 2 layers "
        f"({floor / 1e6:.0f}M). Counted: {working / 1e6:.0f}M elements.")
    return Term("gathered_working_set", "ZeRO-3 gathered working set", gathered, formula)


def _placement(r: _Sizes) -> tuple[dict[str, int], list[str], list[str], list[str]]:
    """Bytes per trainable parameter by component, and where each component lives: whole on
    every GPU, partitioned across GPUs, or partitioned and offloaded to the host."""
    per = _bytes_per_trainable(r.e)
    gpu_whole, gpu_part, host_part = [], [], []
    for comp, nbytes in per.items():
        if nbytes == 0:
            continue
        partitioned = (comp == "w16" and r.stage == 3) or (comp == "g16" and r.stage >= 2) or \
                      (comp in ("master", "adam", "g32") and r.stage >= 1)
        offloaded = r.offload and partitioned
        (host_part if offloaded else gpu_part if partitioned else gpu_whole).append(comp)
    return per, gpu_whole, gpu_part, host_part


def _trainable_term(r: _Sizes) -> Term:
    per, gpu_whole, gpu_part, host_part = _placement(r)
    # persistent (small) trainable parameters keep their 16-bit weight whole on every GPU
    t_bytes = sum(per[c] for c in gpu_whole) * r.N_train
    t_bytes += sum(per[c] for c in gpu_part if c != "w16") * r.N_train // r.W
    if "w16" in gpu_part:
        t_bytes += per["w16"] * (r.Nt_part // r.W + r.Nt_small)
    if "w16" in host_part:
        t_bytes += per["w16"] * r.Nt_small
    return Term("trainable_states", "trainable params+grads+optim", t_bytes,
                _trainable_formula(per, gpu_whole, gpu_part, host_part))


def _offloaded_bytes(r: _Sizes) -> int:
    """Per-rank bytes that offloading moves from the GPU to the host."""
    if not r.offload:
        return 0
    per, _, _, host_part = _placement(r)
    moved = _ceil_div(r.e * r.Nf_part, r.W) if r.stage == 3 else 0
    moved += sum(per[c] for c in host_part if c != "w16") * r.N_train // r.W
    if "w16" in host_part:
        moved += per["w16"] * r.Nt_part // r.W
    return moved


def _activations(r: _Sizes) -> tuple[Activations, Activations, Activations]:
    """The run's activations, and both modes: (as run, checkpointed, not checkpointed)."""
    act_ck = activation_memory(r.shape, r.args, True, r.layers)
    act_full = activation_memory(r.shape, r.args, False, r.layers)
    return (act_ck if r.args.gradient_checkpointing else act_full), act_ck, act_full


def _activation_term(r: _Sizes, act: Activations, act_ck: Activations, act_full: Activations,
                     notes: list[str]) -> Term:
    args = r.args
    s_eff = "(S+P)" if args.method == "prompt" else "S"
    per_layer_text = _per_layer_formula(args, s_eff)
    if args.gradient_checkpointing:
        formula = (f"L_g·{s_eff}·B·H·e (checkpointed layer inputs) + one layer recomputed "
                   f"[{per_layer_text}] + backward grads 2·{s_eff}·B·H·e + 2·{s_eff}·B·I·e "
                   "+ final LN in/out, masks")
    else:
        formula = (f"sum over L_g layers of [{per_layer_text}] + backward grads "
                   f"2·{s_eff}·B·H·e + 2·{s_eff}·B·I·e + final LN in/out, masks")
    other_mode = act_full if args.gradient_checkpointing else act_ck
    notes.append(f"activations {'without' if args.gradient_checkpointing else 'with'} "
                 f"checkpointing would be {gib(other_mode.total):.2f} GiB")
    L = r.shape.num_layers
    if args.method == "ptv2" and act.grad_layers < L:
        notes.append(f"layers 0-{L - act.grad_layers - 1} precede the first prefixed layer: "
                     "with a frozen backbone autograd stores nothing for them")
    if args.attention == "sdpa":
        notes.append("attention: sdpa with a boolean mask runs PyTorch's memory-efficient "
                     "kernel (not flash), which stores no a·S·(S+P) score matrix; "
                     "--attention explicit would store a·B·S·(S+P)·(2e+1) bytes per layer")
    label = "activations" + (" (checkpointed)" if args.gradient_checkpointing else
                             " (no checkpointing)")
    return Term("activations", label, act.total, formula)


def _prefix_term(r: _Sizes) -> Term:
    args, e, H, P = r.args, r.e, r.shape.hidden_size, r.args.prefix_len
    if args.method == "ptv2" and r.n_sel and P:
        kv = args.micro_batch * r.n_sel * 2 * P * H
        prefix = kv * (e + 1 + 2 * e)
        formula = ("B·n_sel·2·P·H·(e values + 1 dropout mask + 2e gradient: accumulated "
                   "+ incoming)")
        if args.reparam == "mlp":
            prefix += 2 * e * P * (args.prefix_hidden + r.n_sel * 2 * H)
            formula += " + 2e·P·(h' + n_sel·2H) for the MLP's output and hidden"
    else:
        prefix = 0
        formula = ("none (the P prompt tokens are counted in the sequence)"
                   if args.method == "prompt" else "none")
    return Term("prefix_kv", "prefix keys/values", prefix, formula)


def _head_term(r: _Sizes) -> Term:
    if r.args.head == "verbalizer":
        return Term("head_logits", "head / LM logits",
                    2 * r.args.micro_batch * r.shape.vocab_size * r.e,
                    "2·B·V·e: LM logits at the [MASK] position and their gradient")
    return Term("head_logits", "head / LM logits", 0,
                f"{head_kind(r.args.head, r.shape)} head on [CLS]: B×H-sized, negligible")


def _buffer_term(r: _Sizes) -> Term:
    zs, e = r.zs, r.e
    rb = int(zs.get("reduce_bucket_size", 0))
    if r.stage == 3:
        buffers = rb * e if zs.get("contiguous_gradients", True) else 0
        formula = "reduce_bucket_size·e (the contiguous gradient bucket)"
    elif r.stage in (1, 2):
        copies = 2 if zs.get("overlap_comm") else 1
        eb = 4 if r.stage == 1 else e
        buffers = (rb * eb * copies if zs.get("contiguous_gradients", True) else 0)
        buffers += e * r.largest_trainable
        formula = (f"reduce_bucket_size·{eb}·{copies} (gradient buckets"
                   f"{', double-buffered for overlap_comm' if copies == 2 else ''}) + "
                   "e·largest trainable module (its full gradient)")
    else:
        buffers = 0
        formula = "none without ZeRO"
    return Term("zero_buffers", "DeepSpeed buffers", buffers, formula)


def _symbols(r: _Sizes, act: Activations) -> list[tuple[str, str]]:
    """The legend of the formulas: each symbol and its value for this run."""
    args, shape = r.args, r.shape
    symbols = [
        ("N", f"{r.N_backbone:,} backbone parameters"
              + (" (with the LM head)" if r.with_lm_head and shape.family != "glm" else "")),
        ("N_train", f"{r.N_train:,} trainable "
                    f"({100 * r.N_train / max(r.N_backbone, 1):.3g}% of N)"),
        ("N_frozen", f"{r.N_frozen:,}"),
        ("W", f"{r.W} {'CPU ranks' if args.accelerator == 'cpu' else 'GPUs'} ({args.nodes} "
              f"node(s) × {args.gpus_per_node})"),
        ("e", f"{r.e} bytes ({args.precision})"),
        ("L, H, a, I, V", f"{shape.num_layers}, {shape.hidden_size}, {shape.num_heads}, "
                          f"{shape.intermediate_size}, {shape.vocab_size}"),
        ("S, P, B", f"{args.seq_len}, {args.prefix_len}, {args.micro_batch}"),
    ]
    if args.method == "ptv2":
        symbols.append(("n_sel", f"{r.n_sel} layers with a prefix ({args.prefix_layers})"))
    symbols.append(("L_g", f"{act.grad_layers} layers autograd goes through"))
    if r.stage == 3:
        symbols.append(("N_part / N_small", f"{r.Nf_part + r.Nt_part:,} partitioned / "
                                            f"{r.Nf_small + r.Nt_small:,} kept whole"))
    return symbols


def host_memory_terms(args: PlanArgs, shape: ModelShape, W: int, e: int, device_total: int,
                      offloaded: int, n_backbone: int) -> list[Term]:
    """Host (CPU) memory of one rank, in bytes, term by term: the process itself, what the
    device terms put on the host (all of them when the ranks compute on the CPU), the
    offloaded ZeRO state, and the transient of loading the checkpoint."""
    terms = [Term("process", "process baseline", parse_mem(args.host_baseline),
                  f"--host-baseline {args.host_baseline}: Python, torch, DeepSpeed, "
                  "tokenizer, before any weights")]
    if args.accelerator == "cpu":
        terms.append(Term("device_state", "training state (the CPU is the device)",
                          device_total, "the per-rank total above (no CUDA reserve)"))
    if offloaded:
        terms.append(Term("offloaded", "offloaded ZeRO state", offloaded,
                          "N_frozen_part·e/W + offloaded trainable components / W"))
    largest_param = max(n for _, sizes in shape.modules() for n in sizes)
    largest_module = max(sum(sizes) for _, sizes in shape.modules())
    if args.zero_stage == 3 and shape.family == "glm":
        load, formula = (_ceil_div(e * largest_param, W),
                         "e·largest parameter/W: each rank reads only its own partition's "
                         "slice of the file")
    elif args.zero_stage == 3:
        load, formula = (e * largest_module,
                         "e·largest module: transformers gathers each module on every rank "
                         "while rank 0 copies it in")
    elif args.accelerator == "cpu":
        load, formula = 0, "none beyond the weights counted above (read in place)"
    else:
        load, formula = (e * n_backbone, "e·N: the whole model is read into host memory "
                                          "before it moves to the GPU (without ZeRO-3)")
    terms.append(Term("loading", "loading transient", load, formula))
    return terms


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _trainable_formula(per, whole, part, host) -> str:
    def names(comps):
        return " + ".join(f"{per[c]} {_COMPONENT_NAMES[c]}" for c in comps)

    pieces = []
    if whole:
        pieces.append(f"N_train·({names(whole)})")
    if part:
        pieces.append(f"N_train·({names(part)})/W")
    text = " + ".join(pieces) if pieces else "0"
    if host:
        text += f"; on CPU: {names(host)}"
    return text


def _per_layer_formula(args: PlanArgs, s: str) -> str:
    p = "P" if args.method == "ptv2" and args.prefix_len else "0"
    k = f"({s}+{p})" if p != "0" else s
    core = f"2·{s}·B·H·e LN + {s}·B·I·e GeLU + 2·{s}·B·H masks"
    if args.attention == "sdpa":
        attn = (f" + 4·{s}·B·H·e qkv,out" + (f" + 2·{k}·B·H·e K,V" if p != "0" else "")
                + f" + 4·a·B·{s} lse + B·{s}·{k}·e bias")
    else:
        attn = f" + {s}·B·H·e + 2·{k}·B·H·e q,K,V + a·B·{s}·{k}·(2e+1) scores"
    trainable = ""
    if args.method == "finetune":
        trainable = (f" + {2 if args.attention == 'sdpa' else 3}·{s}·B·H·e + {s}·B·I·e "
                     "Linear inputs")
    return core + attn + trainable


def _suggestions(args: PlanArgs, shape: ModelShape, base: Plan) -> list[str]:
    out = []

    def alt(**changes) -> Plan:
        return _plan(dataclasses.replace(args, **changes), shape, suggest=False)

    def verdict(p: Plan) -> str:
        return (f"{gib(p.total):.1f} GiB per GPU, "
                + ("fits" if p.fits else f"still {gib(p.total - p.budget):.1f} GiB over"))

    if args.zero_stage < 3:
        out.append(f"ZeRO-3 (--zero-stage 3, shards the frozen weights): "
                   f"{verdict(alt(zero_stage=3))}")
    if not args.offload and args.zero_stage >= 1:
        flag = "--offload" + ("" if args.zero_stage == 3 else " --zero-stage 3")
        out.append(f"offload to CPU ({flag}, ds_configs/zero3_offload_fp16.json): "
                   f"{verdict(alt(offload=True, zero_stage=3))}")
    if not args.gradient_checkpointing:
        out.append(f"activation checkpointing (--gradient-checkpointing): "
                   f"{verdict(alt(gradient_checkpointing=True))}")
    if args.micro_batch > 1:
        fitting = None
        for mb in range(args.micro_batch - 1, 0, -1):
            if alt(micro_batch=mb).fits:
                fitting = mb
                break
        if fitting:
            accum = _ceil_div(args.micro_batch, fitting)
            out.append(f"smaller micro-batch: --micro-batch {fitting} fits; gradient "
                       f"accumulation x{accum} keeps the effective batch")
        else:
            out.append(f"smaller micro-batch: even --micro-batch 1 needs "
                       f"{gib(alt(micro_batch=1).total):.1f} GiB")
    if args.zero_stage == 3:
        for nodes in (2, 4, 8, 16, 32, 64):
            n = args.nodes * nodes
            p = alt(nodes=n)
            if p.fits:
                out.append(f"more GPUs: {n} nodes × {args.gpus_per_node} = "
                           f"{n * args.gpus_per_node} GPUs fit ({gib(p.total):.1f} GiB per GPU)")
                break
        else:
            out.append("more GPUs alone does not make it fit (the unsharded terms are too big)")
    return out


# ---------------------------------------------------------------------------------------------
# output


def format_plan(p: Plan) -> str:
    a = p.args
    on_cpu = a.accelerator == "cpu"
    stage = f"ZeRO-{a.zero_stage}" + (" + CPU offload" if a.offload else "")
    where = (f"{a.nodes} node(s) × {a.gpus_per_node} CPU ranks = {p.world_size}" if on_cpu else
             f"{a.nodes} node(s) × {a.gpus_per_node} GPUs = {p.world_size}, {a.gpu_mem} "
             f"({gib(p.budget):.2f} GiB) per GPU")
    lines = [
        f"ptv2 plan: {p.shape.name} ({p.shape.family}, {p.backbone_params / 1e9:.2f}B params), "
        f"--method {a.method}, {a.precision}, {stage}",
        f"  {where}; micro-batch {a.micro_batch}, seq {a.seq_len}, "
        f"prefix {a.prefix_len}, checkpointing {'on' if a.gradient_checkpointing else 'off'}",
        checkpointing_line(a.gradient_checkpointing),
        "",
        "numbers used:",
    ]
    width = max(len(k) for k, _ in p.symbols)
    lines += [f"  {k.ljust(width)} = {v}" for k, v in p.symbols]
    lines.append("")
    label_w = max(len(t.label) for t in p.terms + p.host_terms) + 2
    formula_w = 64
    if on_cpu:
        lines.append("per rank, on the CPU (the device terms below are host memory):")
    lines.append(f"{'term'.ljust(label_w)}{'formula / note'.ljust(formula_w)}{'GiB':>9}")
    lines.append("-" * (label_w + formula_w + 9))
    for t in p.terms:
        wrapped = textwrap.wrap(t.formula, formula_w - 2) or [""]
        lines.append(f"{t.label.ljust(label_w)}{wrapped[0].ljust(formula_w)}{gib(t.bytes):9.3f}")
        lines += [" " * label_w + w for w in wrapped[1:]]
    lines.append("-" * (label_w + formula_w + 9))
    lines.append(f"{'total'.ljust(label_w)}{''.ljust(formula_w)}{gib(p.total):9.3f}")
    if not on_cpu:
        lines.append(f"{'budget'.ljust(label_w)}{('--gpu-mem ' + a.gpu_mem).ljust(formula_w)}"
                     f"{gib(p.budget):9.3f}")
        lines.append("")
        if p.fits:
            lines.append(f"FITS: {gib(p.headroom):.2f} GiB to spare per GPU "
                         f"(the plan uses {100 * p.total / p.budget:.0f}% of the budget)")
        else:
            lines.append(f"DOES NOT FIT: {gib(-p.headroom):.2f} GiB over per GPU "
                         f"(the plan needs {100 * p.total / p.budget:.0f}% of the budget)")
    lines.append("")
    ranks = f"{a.gpus_per_node} rank{'s' if a.gpus_per_node > 1 else ''}"
    lines.append(f"host (CPU) memory per rank{' (the CPU is the device)' if on_cpu else ''}:")
    for t in p.host_terms:
        wrapped = textwrap.wrap(t.formula, formula_w - 2) or [""]
        lines.append(f"{t.label.ljust(label_w)}{wrapped[0].ljust(formula_w)}{gib(t.bytes):9.3f}")
        lines += [" " * label_w + w for w in wrapped[1:]]
    lines.append(f"{'per rank'.ljust(label_w)}{''.ljust(formula_w)}"
                 f"{gib(p.host_bytes_per_rank):9.3f}")
    lines.append(f"{'per node'.ljust(label_w)}{('× ' + ranks).ljust(formula_w)}"
                 f"{gib(p.host_bytes_per_node):9.3f}")
    if p.host_fits is None:
        lines.append("host: no --host-mem given, no verdict")
    else:
        lines.append(("host FITS" if p.host_fits else "host DOES NOT FIT") +
                     f": {gib(p.host_bytes_per_node):.1f} of {gib(p.host_budget):.1f} GiB "
                     f"per node (--host-mem {a.host_mem})")
    if p.suggestions:
        lines.append("")
        lines.append("to make it fit:")
        lines += [f"  - {s}" for s in p.suggestions]
    lines.append("")
    lines.append("notes:")
    for n in p.notes:
        wrapped = textwrap.wrap(n, 94)
        lines.append(f"  - {wrapped[0]}")
        lines += [f"    {w}" for w in wrapped[1:]]
    return "\n".join(lines)


def checkpointing_line(on: bool) -> str:
    """States which activation-memory assumption the plan makes and how to change it."""
    if on:
        return ("  activation checkpointing: ON (assumed because --gradient-checkpointing is "
                "set; train with --gradient-checkpointing too, or the activations are larger)")
    return ("  activation checkpointing: OFF (as `ptv2 train` runs by default); "
            "--gradient-checkpointing turns it on for both plan and train")


def run(args: PlanArgs) -> int:
    """Print the plan. Exit code: 0 when it fits (EXIT_FITS), 1 when it does not
    (EXIT_DOES_NOT_FIT): the GPU budget on GPUs, and the host budget when --host-mem is given; bad options raise UserError, a ValueError (the CLI turns that into exit
    code 2)."""
    p = plan(args)
    print(format_plan(p))
    return EXIT_FITS if p.verdict else EXIT_DOES_NOT_FIT
