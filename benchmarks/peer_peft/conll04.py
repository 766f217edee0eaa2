#!/usr/bin/env python
"""PEFT 0.17 prefix tuning on CoNLL-04 entity tagging: dev F1 after every epoch.

    bash benchmarks/peer_peft/conll04.sh [OUT.json] [options]

The peer side of issue 13's "time to quality": how many epochs PEFT's prefix tuning needs to
come within 1 point of fine-tuning's best dev F1, next to ``ptv2 train``'s per-epoch history on
the same data (docs/RESULTS.md). Runs in the peer environment (transformers 4.57 + peft 0.17 +
seqeval; ``conll04.sh`` makes it) and uses ``ptv2 train --task conll04``'s settings for
``--method ptv2`` where PEFT has them: the same encoder and files, P = 64 virtual tokens on
every layer, AdamW at lr 2e-2 without weight decay, batch 32, 40 epochs with linear decay to 0
and no warm-up, training mode (dropout on), the word's tag on its first sub-token, entity F1
from seqeval (micro average, IOB2, default mode) on the dev words. Differences that remain:
PEFT initialises its prefix table N(0, 1) (``nn.Embedding``'s default), ptv2_ds's default
for CoNLL-04 is ``--prefix-init activations``; PEFT's token head is the model's dropout +
Linear, as ptv2_ds's ``token`` head; sentences longer than 256 sub-tokens are cut here (none in
CoNLL-04 are), where ptv2_ds windows them.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "conll04"
IGNORE = -100


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="encoder directory (conll04.sh passes the "
                   "MiniLM checkpoint `ptv2 train --model minilm` uses)")
    p.add_argument("--train-file", default=str(DATA / "train.txt"))
    p.add_argument("--validation-file", default=str(DATA / "dev.txt"))
    p.add_argument("--prefix-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/peft_conll04.json",
                   help="JSON written after every epoch (settings + history)")
    return p.parse_args(argv)


def read_conll(path: str) -> list[tuple[list[str], list[str]]]:
    """Sentences of a ``token TAG`` per line file, blank lines between sentences."""
    sentences, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines() + [""]:
        parts = line.split()
        if not parts:
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        words.append(parts[0])
        tags.append(parts[-1])
    return sentences


def encode(tokenizer, sentences, label_ids: dict[str, int], max_len: int) -> list[dict]:
    """One feature per sentence: input ids and labels on each word's first sub-token."""
    features = []
    for words, tags in sentences:
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_len)
        labels, previous = [], None
        for word in enc.word_ids():
            labels.append(label_ids[tags[word]] if word is not None and word != previous
                          else IGNORE)
            previous = word
        features.append({"input_ids": enc["input_ids"], "labels": labels,
                         "words": len(words)})
    return features


def collate(features: list[dict], pad_id: int):
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id)
    labels = torch.full((len(features), width), IGNORE)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}, labels


def evaluate(model, features, sentences, labels: list[str], pad_id: int, batch_size: int):
    """seqeval entity F1 on the dev words (a word cut by truncation counts as ``O``)."""
    import torch
    from seqeval.metrics import f1_score

    model.eval()
    predicted = []
    with torch.inference_mode():
        for i in range(0, len(features), batch_size):
            chunk = features[i:i + batch_size]
            batch, gold = collate(chunk, pad_id)
            best = model(**batch).logits.argmax(-1)
            for row, f in enumerate(chunk):
                tags = [labels[t] for t in best[row][gold[row] != IGNORE].tolist()]
                predicted.append(tags + ["O"] * (f["words"] - len(tags)))
    model.train()
    return f1_score([tags for _, tags in sentences], predicted)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from peft import PrefixTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    train, dev = read_conll(args.train_file), read_conll(args.validation_file)
    labels = ["O"] + sorted({t for _, tags in train for t in tags} - {"O"})
    label_ids = {t: i for i, t in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train_features = encode(tokenizer, train, label_ids, args.max_len)
    dev_features = encode(tokenizer, dev, label_ids, args.max_len)
    base = AutoModelForTokenClassification.from_pretrained(args.model, num_labels=len(labels))
    model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.TOKEN_CLS,
                                                    num_virtual_tokens=args.prefix_len))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    steps_per_epoch = -(-len(train_features) // args.batch_size)
    total = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    result = {"settings": vars(args), "labels": labels,
              "trainable_params": sum(p.numel() for p in trainable), "history": []}
    print(f"PEFT prefix tuning, {len(train)} train / {len(dev)} dev sentences, "
          f"{result['trainable_params']:,} trainable, {total} steps")
    pad_id = tokenizer.pad_token_id
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        order = list(range(len(train_features)))
        random.shuffle(order)
        for i in range(0, len(order), args.batch_size):
            batch, gold = collate([train_features[j] for j in order[i:i + args.batch_size]],
                                  pad_id)
            logits = model(**batch).logits
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
        f1 = evaluate(model, dev_features, dev, labels, pad_id, 64)
        result["history"].append({"epoch": epoch, "f1": f1, "loss": loss.item(),
                                  "seconds": round(time.time() - t0, 1)})
        print(f"epoch {epoch}: dev F1 {f1:.4f} (last loss {loss.item():.4f}, "
              f"{time.time() - t0:.0f} s)", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
