"""Speed of SQuAD post-processing (`QATask.decode`): questions per second on the shared half
of the SQuAD 2.0 dev set, with random logits, after encoding it for MiniLM.

    python benchmarks/qa_postprocess.py [--max-seq-len 384] [--doc-stride 128] [--repeat 4]

``--repeat`` decodes the set that many times over (4 x 2,828 = 11,312 questions, about the
size of the full 11,873-question dev set). Encoding time is reported separately.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from ptv2_ds.backbones import load_backbone
from ptv2_ds.tasks import build_task

SRC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad2" / \
    "squad2-dev-half-A.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SRC))
    parser.add_argument("--max-seq-len", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    task = build_task("squad_v2", doc_stride=args.doc_stride)
    examples = task.read_file(args.data)
    backbone = load_backbone("minilm")
    t0 = time.perf_counter()
    encoded = task.encode(examples, backbone, args.max_seq_len)
    encode_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    results = [(rng.standard_normal(len(f["input_ids"])).astype(np.float32),
                rng.standard_normal(len(f["input_ids"])).astype(np.float32))
               for f in encoded.features]
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        predictions = task.decode(results, encoded)
    decode_s = time.perf_counter() - t0
    n = len(examples) * args.repeat
    print(f"{len(examples)} questions, {len(encoded)} windows at {args.max_seq_len}/"
          f"{args.doc_stride}; encode {encode_s:.1f} s; decode {n} questions in "
          f"{decode_s:.2f} s = {n / decode_s:,.0f} questions/s "
          f"({len(predictions)} predictions per pass)")


if __name__ == "__main__":
    main()
