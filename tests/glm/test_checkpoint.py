"""GLM checkpoint reading (release dirs, hub layouts), validation errors, and `glm convert`."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from glm import convert as convert_mod
from glm.checkpoint import (
    CheckpointError,
    from_pretrained,
    load_state_dict_from_path,
    merge_model_parallel,
    open_checkpoint,
    split_model_parallel,
)
from glm.config import GLMConfig
from glm.model import GLMModel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- helpers --------------------------------------------------------------------------------

def tiny_config() -> GLMConfig:
    return GLMConfig(vocab_size=64, hidden_size=32, num_layers=2, num_attention_heads=4,
                     max_position_embeddings=16)


@pytest.fixture(scope="module")
def reference():
    """A randomly initialised tiny GLM (biases and LayerNorms randomised too, so a wrong merge
    of any tensor shows) and its outputs on a fixed batch."""
    cfg = tiny_config()
    torch.manual_seed(0)
    model = GLMModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    b, s = 2, 8
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randint(0, cfg.vocab_size, (b, s), generator=g),
              torch.stack([torch.arange(s).expand(b, s), torch.zeros(b, s, dtype=torch.long)], 1),
              torch.tensor([5, 8]))
    return cfg, model, inputs


def outputs(model, inputs):
    with torch.no_grad():
        out = model(*inputs, return_logits=True)
    return out.last_hidden_state, out.logits


def assert_same_model(model, ref_model, inputs):
    sd, ref = model.state_dict(), ref_model.state_dict()
    assert list(sd) == list(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k
    for got, want in zip(outputs(model, inputs), outputs(ref_model, inputs)):
        assert torch.equal(got, want)


def thudm_split(key: str, t: torch.Tensor, n: int) -> list[torch.Tensor]:
    """THUDM's model-parallel split written out independently of glm.checkpoint: rank r's
    piece of each tensor for n-way model parallelism."""
    if "query_key_value" in key:            # per-third on dim 0: rank r holds [q_r; k_r; v_r]
        h3 = t.shape[0] // 3
        part = h3 // n
        return [torch.cat([t[j * h3 + r * part: j * h3 + (r + 1) * part] for j in range(3)])
                for r in range(n)]
    if key == "word_embeddings.weight" or "dense_h_to_4h" in key:   # dim 0 (weight and bias)
        part = t.shape[0] // n
        return [t[r * part:(r + 1) * part].clone() for r in range(n)]
    if key.endswith("attention.dense.weight") or key.endswith("dense_4h_to_h.weight"):  # dim 1
        part = t.shape[1] // n
        return [t[:, r * part:(r + 1) * part].clone() for r in range(n)]
    return [t.clone() for _ in range(n)]    # position tables, LayerNorms, row-parallel biases


def write_release(directory, state_dict, n: int, tag: str = "release",
                  tracker: str | None = "latest_checkpointed_iteration.txt",
                  tag_dir: str | None = None, extra: dict | None = None):
    """A THUDM release directory: tracker file -> <tag_dir>/mp_rank_XX_model_states.pt."""
    tag_dir = tag if tag_dir is None else tag_dir
    shard_dir = os.path.join(directory, tag_dir) if tracker else os.path.join(directory)
    os.makedirs(shard_dir, exist_ok=True)
    if tracker:
        with open(os.path.join(directory, tracker), "w") as f:
            f.write(tag + "\n")
    for r in range(n):
        module = {k: thudm_split(k, v, n)[r] for k, v in state_dict.items()}
        obj = {"module": module, "iteration": 0, "mp_world_size": n, **(extra or {})}
        torch.save(obj, os.path.join(shard_dir, f"mp_rank_{r:02d}_model_states.pt"))
    return directory


def write_config(directory, cfg: GLMConfig, hub_names: bool = False):
    d = cfg.to_dict()
    if hub_names:  # the THUDM hub config.json spells two fields differently
        d["max_sequence_length"] = d.pop("max_position_embeddings")
        d["num_hidden_layers"] = d.pop("num_layers")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(d, f)


# -- model-parallel merge -------------------------------------------------------------------

def test_split_rules_match_thudm_and_merge_inverts_them(reference):
    _, model, _ = reference
    for key, t in model.state_dict().items():
        for n in (1, 2, 4):
            ours = split_model_parallel(key, t, n)
            theirs = thudm_split(key, t, n)
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), (key, n)
            assert torch.equal(merge_model_parallel(key, theirs), t), (key, n)


def test_qkv_merge_is_per_third():
    # 2 ranks, H = 2: rank r holds [q_r; k_r; v_r]; the merge interleaves by third.
    w0 = torch.tensor([[10.], [20.], [30.]])   # q0, k0, v0
    w1 = torch.tensor([[11.], [21.], [31.]])   # q1, k1, v1
    merged = merge_model_parallel("transformer.layers.0.attention.query_key_value.weight",
                                  [w0, w1])
    assert merged.flatten().tolist() == [10., 11., 20., 21., 30., 31.]


# -- release directories --------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2])
def test_release_dir_loads_identical_model(tmp_path, reference, n):
    cfg, model, inputs = reference
    write_release(tmp_path, model.state_dict(), n)

    sd, found_cfg = load_state_dict_from_path(tmp_path)
    assert found_cfg is None                      # the release layout has no config.json
    ref = model.state_dict()
    assert sorted(sd) == sorted(ref)
    assert all(torch.equal(sd[k], ref[k]) for k in ref)

    loaded = from_pretrained(tmp_path, cfg)
    assert not loaded.training
    assert all(p.device.type == "cpu" and p.requires_grad for p in loaded.parameters())
    assert_same_model(loaded, model, inputs)


@pytest.mark.parametrize("tracker,tag,tag_dir", [
    ("latest_checkpointed_iteration.txt", "100", "100"),            # THUDM/GLM
    ("latest_checkpointed_iteration.txt", "100", "iter_0000100"),   # Megatron-LM
    ("latest", "global_step100", "global_step100"),                 # DeepSpeed
    ("latest", "release", "release"),
    (None, None, None),                                             # shards in DIR itself
])
def test_release_dir_tags(tmp_path, reference, tracker, tag, tag_dir):
    cfg, model, inputs = reference
    write_release(tmp_path, model.state_dict(), 2, tag=tag or "", tracker=tracker,
                  tag_dir=tag_dir)
    assert_same_model(from_pretrained(tmp_path, cfg), model, inputs)


def test_release_dir_config_by_preset_name_and_missing_config(tmp_path, reference):
    _, model, _ = reference
    write_release(tmp_path, model.state_dict(), 2)
    with pytest.raises(CheckpointError, match=r"config=GLMConfig.from_preset.*glm-10b"):
        from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        from_pretrained(tmp_path, "glm-large")   # a preset name is accepted; the shape is checked
    assert "'word_embeddings.weight': checkpoint (64, 32)" in str(err.value)
    assert "vocab_size=64, hidden_size=32, 2 layers" in str(err.value)


def test_release_dir_with_added_config_json(tmp_path, reference):
    cfg, model, inputs = reference
    write_release(tmp_path, model.state_dict(), 2)
    write_config(tmp_path, cfg)
    assert_same_model(from_pretrained(tmp_path), model, inputs)


class _TouchOnUnpickle:
    """Unpickling this runs `Path.touch(path)`: stands for arbitrary code in a crafted .pt."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


def test_release_dir_with_training_state_loads_safely(tmp_path, reference):
    # THUDM/DeepSpeed training checkpoints also pickle numpy RNG states and the argparse
    # Namespace next to "module": read with the weights-only unpickler + allowlist, no warning
    cfg, model, inputs = reference
    write_release(tmp_path, model.state_dict(), 1,
                  extra={"np_rng_state": np.random.get_state(),
                         "seeded_rng_state": np.random.RandomState(0).get_state(),
                         "np_scalar": np.float64(0.5),
                         "args": argparse.Namespace(lr=1e-4, fp16=True, save="ckpt")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = from_pretrained(tmp_path, cfg)
    assert_same_model(loaded, model, inputs)


def test_crafted_pickle_is_refused_by_default(tmp_path, reference):
    cfg, model, _ = reference
    marker = tmp_path / "pwned"
    write_release(tmp_path / "ckpt", model.state_dict(), 1,
                  extra={"args": _TouchOnUnpickle(marker)})
    shard = tmp_path / "ckpt" / "release" / "mp_rank_00_model_states.pt"
    for load in (lambda: from_pretrained(tmp_path / "ckpt", cfg),
                 lambda: load_state_dict_from_path(tmp_path / "ckpt"),
                 lambda: convert_mod.convert(str(tmp_path / "ckpt"), str(tmp_path / "out"),
                                             preset=cfg)):
        with pytest.raises(CheckpointError) as err:
            load()
        msg = str(err.value)
        assert msg.startswith(f"{shard}: refusing to load it: the weights-only unpickler "
                              "rejects it (Unsupported global: GLOBAL ")
        assert "--allow-unsafe-pickle" in msg
        assert "glm convert --allow-unsafe-pickle SRC DST" in msg
        assert not marker.exists()  # the pickled code never ran
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_allow_unsafe_pickle_uses_the_full_unpickler(tmp_path, reference, capsys):
    cfg, model, inputs = reference
    marker = tmp_path / "pwned"
    write_release(tmp_path / "ckpt", model.state_dict(), 1,
                  extra={"args": _TouchOnUnpickle(marker)})
    with pytest.warns(UserWarning, match="full unpickler"):
        loaded = from_pretrained(tmp_path / "ckpt", cfg, allow_unsafe_pickle=True)
    assert marker.exists()  # proof that the opt-in really ran the full unpickler
    assert_same_model(loaded, model, inputs)
    marker.unlink()
    write_config(tmp_path / "shape", cfg)
    argv = [str(tmp_path / "ckpt"), str(tmp_path / "out"), "--config",
            str(tmp_path / "shape" / "config.json")]
    assert convert_mod.main(argv) == 2
    assert "--allow-unsafe-pickle" in capsys.readouterr().err and not marker.exists()
    with pytest.warns(UserWarning, match="full unpickler"):
        assert convert_mod.main(argv + ["--allow-unsafe-pickle"]) == 0
    assert marker.exists()
    assert_same_model(from_pretrained(tmp_path / "out"), model, inputs)


def test_release_shards_with_different_keys(tmp_path, reference):
    cfg, model, _ = reference
    write_release(tmp_path, model.state_dict(), 2)
    f1 = tmp_path / "release" / "mp_rank_01_model_states.pt"
    obj = torch.load(f1, weights_only=True)
    del obj["module"]["transformer.final_layernorm.bias"]
    torch.save(obj, f1)
    with pytest.raises(CheckpointError, match="transformer.final_layernorm.bias"):
        from_pretrained(tmp_path, cfg)


def test_release_missing_shard(tmp_path, reference):
    cfg, model, _ = reference
    write_release(tmp_path, model.state_dict(), 2)
    os.rename(tmp_path / "release" / "mp_rank_01_model_states.pt",
              tmp_path / "release" / "mp_rank_02_model_states.pt")
    with pytest.raises(CheckpointError, match="a shard is missing"):
        from_pretrained(tmp_path, cfg)


def test_tracker_names_missing_directory(tmp_path, reference):
    cfg, model, _ = reference
    write_release(tmp_path, model.state_dict(), 1)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("200")
    with pytest.raises(CheckpointError, match="names tag '200'"):
        from_pretrained(tmp_path, cfg)


# -- hub layout -----------------------------------------------------------------------------

def test_hub_pytorch_model_bin_with_glm_prefix(tmp_path, reference):
    cfg, model, inputs = reference
    write_config(tmp_path, cfg, hub_names=True)
    torch.save({f"glm.{k}": v for k, v in model.state_dict().items()},
               tmp_path / "pytorch_model.bin")
    loaded = from_pretrained(tmp_path)            # config from config.json
    assert loaded.config == cfg
    assert_same_model(loaded, model, inputs)


def test_hub_safetensors(tmp_path, reference):
    cfg, model, inputs = reference
    write_config(tmp_path, cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    assert_same_model(from_pretrained(tmp_path), model, inputs)


def test_hub_sharded_safetensors_with_index_and_prefix(tmp_path, reference):
    cfg, model, inputs = reference
    write_config(tmp_path, cfg)
    sd = {f"glm.{k}": v.contiguous() for k, v in model.state_dict().items()}
    keys = list(sd)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, str(tmp_path / name))
    weight_map = {k: name for name, ks in shards.items() for k in ks}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_same_model(from_pretrained(tmp_path), model, inputs)


def test_hub_config_json_as_thudm_writes_it(tmp_path):
    # The THUDM/glm-10b-chinese config.json (abridged): hub key names, no tokenizer field.
    write = {"architectures": ["GLMModel"], "attention_dropout_prob": 0.1,
             "block_position_encoding": True, "embedding_dropout_prob": 0.1,
             "hidden_size": 4096, "initializer_range": 0.02, "max_sequence_length": 1024,
             "model_type": "glm", "num_attention_heads": 64, "num_layers": 48,
             "output_dropout_prob": 0.1, "torch_dtype": "float32", "vocab_size": 50048}
    (tmp_path / "config.json").write_text(json.dumps(write))
    save_file({"glm.transformer.final_layernorm.bias": torch.zeros(4096)},
              str(tmp_path / "model.safetensors"))
    reader = open_checkpoint(tmp_path)
    assert reader.config == GLMConfig.from_preset("glm-10b-chinese")
    with pytest.raises(CheckpointError, match="missing keys.*word_embeddings.weight"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("layout", ["bin", "safetensors", "release"])
def test_in_place_updates_do_not_touch_the_checkpoint(tmp_path, reference, layout):
    # Weights read from pickles (and safetensors) may stay memory-mapped; the mapping is
    # private (copy-on-write), so training the loaded model never writes into the file.
    cfg, model, _ = reference
    if layout == "release":
        write_release(tmp_path, model.state_dict(), 1)
    else:
        write_config(tmp_path, cfg)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if layout == "bin":
            torch.save(sd, tmp_path / "pytorch_model.bin")
        else:
            save_file(sd, str(tmp_path / "model.safetensors"))
    loaded = from_pretrained(tmp_path, cfg)
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1.0)
    del loaded
    again, _ = load_state_dict_from_path(tmp_path)
    ref = model.state_dict()
    assert all(torch.equal(again[k], ref[k]) for k in ref)


def test_hub_dtype_cast(tmp_path, reference):
    cfg, model, _ = reference
    write_config(tmp_path, cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    loaded = from_pretrained(tmp_path, dtype="bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    kept = from_pretrained(tmp_path)               # None keeps the stored dtype
    assert {p.dtype for p in kept.parameters()} == {torch.float32}


def test_duplicate_key_with_and_without_prefix(tmp_path, reference):
    cfg, model, _ = reference
    write_config(tmp_path, cfg)
    sd = dict(model.state_dict())
    sd["glm.word_embeddings.weight"] = sd["word_embeddings.weight"]
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="'word_embeddings.weight' appears twice"):
        from_pretrained(tmp_path)


def test_no_weights(tmp_path, reference):
    write_config(tmp_path, reference[0])
    with pytest.raises(CheckpointError, match="no weights found"):
        from_pretrained(tmp_path)


# -- validation errors name the key and the file --------------------------------------------

def _bad_state_dicts(model):
    sd = dict(model.state_dict())
    missing = {k: v for k, v in sd.items() if k != "transformer.layers.1.mlp.dense_4h_to_h.bias"}
    unknown = {**sd, "transformer.layers.1.attention.rotary.inv_freq": torch.zeros(4)}
    wrong = {**sd, "transformer.layers.0.attention.dense.weight": torch.zeros(32, 16)}
    return [
        ("missing", missing, "missing keys", "transformer.layers.1.mlp.dense_4h_to_h.bias"),
        ("unknown", unknown, "unexpected keys", "transformer.layers.1.attention.rotary.inv_freq"),
        ("shape", wrong, "shape mismatch", "transformer.layers.0.attention.dense.weight"),
    ]


@pytest.mark.parametrize("case", ["missing", "unknown", "shape"])
@pytest.mark.parametrize("layout", ["bin", "safetensors", "release"])
def test_errors_name_the_key_and_file(tmp_path, reference, case, layout):
    cfg, model, _ = reference
    _, sd, what, key = next(c for c in _bad_state_dicts(model) if c[0] == case)
    if layout == "release":
        torch.save({"module": sd}, tmp_path / "mp_rank_00_model_states.pt")
        (tmp_path / "latest").write_text("release")
        os.makedirs(tmp_path / "release")
        os.rename(tmp_path / "mp_rank_00_model_states.pt",
                  tmp_path / "release" / "mp_rank_00_model_states.pt")
        path_in_msg = str(tmp_path / "release")
    else:
        write_config(tmp_path, cfg)
        fname = "pytorch_model.bin" if layout == "bin" else "model.safetensors"
        if layout == "bin":
            torch.save(sd, tmp_path / fname)
        else:
            save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / fname))
        path_in_msg = str(tmp_path / fname) if case != "missing" else str(tmp_path)
    with pytest.raises(CheckpointError) as err:
        from_pretrained(tmp_path, cfg)
    msg = str(err.value)
    assert what in msg and repr(key) in msg and path_in_msg in msg, msg


# -- glm convert ----------------------------------------------------------------------------

def test_convert_round_trip_and_refuse_overwrite(tmp_path, reference, capsys):
    cfg, model, inputs = reference
    src = write_release(tmp_path / "src", model.state_dict(), 2)
    write_config(tmp_path / "cfg", cfg)
    dst = tmp_path / "dst"
    argv = ["convert", str(src), str(dst), "--config", str(tmp_path / "cfg" / "config.json")]

    assert convert_mod.main(argv) == 0
    assert sorted(os.listdir(dst)) == ["config.json", "model.safetensors"]   # no temp files
    with safe_open(str(dst / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["format"] == "pt"
        assert sorted(f.keys()) == sorted(model.state_dict())
    assert json.loads((dst / "config.json").read_text()) == cfg.to_dict()
    assert_same_model(from_pretrained(dst), model, inputs)

    before = (dst / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert convert_mod.main(argv) == 2                                       # refuses
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (dst / "model.safetensors").stat().st_mtime_ns == before

    # --force, without the optional "convert" word, with a dtype cast.
    assert convert_mod.main(argv[1:] + ["--force", "--dtype", "fp16"]) == 0
    half = from_pretrained(dst)
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k].half()) for k, v in half.state_dict().items())


def test_convert_hub_bin_to_safetensors(tmp_path, reference):
    cfg, model, inputs = reference
    src = tmp_path / "src"
    write_config(src, cfg, hub_names=True)
    torch.save({f"glm.{k}": v for k, v in model.state_dict().items()}, src / "pytorch_model.bin")
    assert convert_mod.main([str(src), str(tmp_path / "dst")]) == 0
    assert_same_model(from_pretrained(tmp_path / "dst"), model, inputs)


def test_convert_release_needs_a_shape(tmp_path, reference, capsys):
    _, model, _ = reference
    src = write_release(tmp_path / "src", model.state_dict(), 1)
    assert convert_mod.main([str(src), str(tmp_path / "dst")]) == 2
    assert "--preset" in capsys.readouterr().err
    assert not (tmp_path / "dst" / "model.safetensors").exists()


def test_convert_interrupted_write_leaves_nothing(tmp_path, reference, monkeypatch):
    cfg, model, _ = reference
    src = write_release(tmp_path / "src", model.state_dict(), 1)
    dst = tmp_path / "dst"
    calls = {"n": 0}
    real_get = type(open_checkpoint(src)).get

    def failing_get(self, key):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk on fire")
        return real_get(self, key)

    monkeypatch.setattr(type(open_checkpoint(src)), "get", failing_get)
    with pytest.raises(OSError, match="disk on fire"):
        convert_mod.convert(str(src), str(dst), preset=cfg)
    assert os.listdir(dst) == []


def test_convert_cli_help():
    proc = subprocess.run([sys.executable, "-m", "glm.convert", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "model.safetensors" in proc.stdout and "--preset" in proc.stdout
    script = os.path.join(os.path.dirname(sys.executable), "glm")
    if os.path.exists(script):  # the console script from pyproject ([project.scripts] glm)
        proc = subprocess.run([script, "convert", "--help"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and "--dtype" in proc.stdout


# -- partial reads for ZeRO-3 partitions ------------------------------------------------------

@pytest.mark.parametrize("fmt", ["safetensors", "pickle"])
def test_get_flat_reads_exactly_the_requested_elements(tmp_path, fmt):
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(7, 5, 3, generator=g), "b": torch.randn(11, generator=g),
               "s": torch.tensor(2.5)}
    (tmp_path / "config.json").write_text(json.dumps(tiny_config().to_dict()))
    if fmt == "safetensors":
        save_file(tensors, str(tmp_path / "model.safetensors"))
    else:
        torch.save(tensors, tmp_path / "pytorch_model.bin")
    reader = open_checkpoint(tmp_path)
    for key, full in tensors.items():
        flat = full.reshape(-1)
        n = flat.numel()
        # ranges inside one row, straddling rows, at both ends, empty, the whole tensor
        for start, length in [(0, n), (0, 1), (n - 1, 1), (4, 9), (14, 16), (n, 0),
                              (n // 2, n - n // 2)]:
            got = reader.get_flat(key, start, length)
            assert torch.equal(got, flat[start:start + length]), (key, start, length)


def test_copy_partition_fills_each_rank_slice_and_pads_the_last():
    from types import SimpleNamespace

    from glm.checkpoint import _copy_partition

    class Reader:
        def get_flat(self, key, start, length):
            return torch.arange(10, dtype=torch.float32)[start:start + length]

    world, numel = 3, 10
    size = -(-numel // world)  # DeepSpeed pads every partition to ceil(numel / world)
    slices = []
    for rank in range(world):
        p = SimpleNamespace(ds_tensor=torch.full((size,), -1.0), ds_numel=numel,
                            ds_zero_partition_rank=rank)
        p.ds_tensor.ds_numel = size
        _copy_partition(Reader(), "w", p)
        slices.append(p.ds_tensor)
    assert torch.equal(slices[0], torch.tensor([0.0, 1, 2, 3]))
    assert torch.equal(slices[1], torch.tensor([4.0, 5, 6, 7]))
    assert torch.equal(slices[2], torch.tensor([8.0, 9, -1, -1]))  # padding left alone
