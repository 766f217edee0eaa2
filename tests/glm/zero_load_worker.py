"""One rank of the multi-rank ZeRO-3 loading test (tests/glm/test_zero_load.py launches it).

    DS_ACCELERATOR=cpu deepspeed --num_gpus 2 --master_port P tests/glm/zero_load_worker.py \
        --ckpt DIR --config CONFIG_JSON --inputs INPUTS_PT --out OUT_DIR

With --hub-ckpt it also loads the same weights from a safetensors file and compares every
rank's partitions. Optionally first (--bad-ckpt, --inject-read-error) checks that a bad checkpoint and a read
error on rank 0 raise CheckpointError on every rank instead of hanging. Then each rank builds
the GLM model inside `deepspeed.zero.Init` (ZeRO stage 3, fp32, CPU
accelerator / gloo) through `glm.checkpoint.from_pretrained(zero_init=True)`, which loads the
checkpoint submodule by submodule; records its local partition size; wraps the model in a
DeepSpeed engine (which installs the ZeRO-3 gather/release hooks) and runs one forward.
Every rank runs the forward (under ZeRO-3 a forward on one rank alone would hang).

Writes OUT_DIR/rank{r}.json (partition sizes, logits checksum) on every rank and
OUT_DIR/logits.pt on rank 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import deepspeed  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from glm.checkpoint import (  # noqa: E402
    CheckpointError,
    ReleaseCheckpointReader,
    from_pretrained,
)
from glm.config import GLMConfig  # noqa: E402

DS_CONFIG = {
    "train_micro_batch_size_per_gpu": 1,
    "zero_optimization": {"stage": 3},
    # fp32: the CPU accelerator runs ZeRO-3 in fp32 or bf16, not fp16.
    "fp16": {"enabled": False},
    "bf16": {"enabled": False},
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", required=True, help="GLMConfig as JSON (the checkpoint's shape)")
    p.add_argument("--inputs", required=True, help="torch file with input_ids/position_ids/sep")
    p.add_argument("--out", required=True)
    p.add_argument("--hub-ckpt", help="the same weights in the hub layout (safetensors)")
    p.add_argument("--bad-ckpt", help="a checkpoint with a missing key; must raise on all ranks")
    p.add_argument("--inject-read-error", metavar="KEY",
                   help="make rank 0's read of KEY fail once; must raise on all ranks")
    p.add_argument("--local_rank", type=int, default=0)  # passed by the deepspeed launcher
    args = p.parse_args()

    # deepspeed.init_distributed(), then each rank removes its CPU shared-memory file (which
    # DeepSpeed would leave in /dev/shm)
    from ptv2_ds.trainer.distributed import init_distributed
    init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    with open(args.config) as f:
        cfg = GLMConfig.from_dict(json.load(f))

    errors = {}
    if args.bad_ckpt:
        # A checkpoint that does not fit (a missing key): every rank must raise, none may hang.
        try:
            from_pretrained(args.bad_ckpt, cfg, zero_init=True, ds_config=DS_CONFIG)
        except CheckpointError as exc:
            errors["validation"] = str(exc)
    if args.inject_read_error:
        # Rank 0 fails to read one tensor half-way through the load: the other rank must not
        # be left waiting in a collective; both raise after the load loop.
        real_get = ReleaseCheckpointReader.get

        def failing_get(self, key):
            if key == args.inject_read_error and rank == 0:
                raise OSError(f"injected read error for {key}")
            return real_get(self, key)

        ReleaseCheckpointReader.get = failing_get
        try:
            from_pretrained(args.ckpt, cfg, zero_init=True, ds_config=DS_CONFIG)
        except CheckpointError as exc:
            errors["read"] = str(exc)
        finally:
            ReleaseCheckpointReader.get = real_get

    model = from_pretrained(args.ckpt, cfg, zero_init=True, ds_config=DS_CONFIG)

    params = list(model.parameters())
    hub_equal = None
    if args.hub_ckpt:
        # the same weights as one safetensors file: each rank reads only the rows covering its
        # partition; every partition must equal the one loaded from the release checkpoint
        hub = from_pretrained(args.hub_ckpt, cfg, zero_init=True, ds_config=DS_CONFIG)
        hub_equal = all(torch.equal(a.ds_tensor, b.ds_tensor)
                        for a, b in zip(params, hub.parameters(), strict=True))
    # the first rows of the partitioned embedding table (the backbone fingerprint's input):
    # 16 rows lie in rank 0's partition (broadcast), all 64 do not (gathered)
    from ptv2_ds.backbones.base import _first_rows
    reference = from_pretrained(args.ckpt, cfg).word_embeddings.weight
    first_rows_equal = {n: torch.equal(_first_rows(model.word_embeddings.weight, n),
                                       reference[:n]) for n in (16, 64)}
    record = {
        "rank": rank,
        "first_rows_equal": first_rows_equal,
        "world_size": world,
        "partitioned": all(hasattr(p, "ds_tensor") for p in params),
        "local_numel": sum(p.ds_tensor.numel() for p in params),
        "full_numel": sum(p.ds_numel for p in params),
        "visible_numel": sum(p.numel() for p in params),  # 0 outside a gather
        "errors": errors,
        "hub_equal": hub_equal,
    }

    engine, *_ = deepspeed.initialize(model=model, config=DS_CONFIG)
    engine.eval()
    inputs = torch.load(args.inputs, weights_only=True)
    with torch.no_grad():
        out = engine(inputs["input_ids"], inputs["position_ids"], inputs["sep"],
                     return_logits=True)
    record["logits_sum"] = float(out.logits.double().sum())

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)
    if rank == 0:
        torch.save({"logits": out.logits, "last_hidden_state": out.last_hidden_state},
                   os.path.join(args.out, "logits.pt"))
    dist.barrier()


if __name__ == "__main__":
    main()
