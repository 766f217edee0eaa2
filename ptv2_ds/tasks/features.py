"""Examples -> backbone features -> padded batches."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .classification import ClassificationTask, Example


class FeatureDataset(Dataset):
    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def encode_examples(examples: list[Example], task: ClassificationTask, backbone, max_len: int,
                    cloze_template: str | None = None, show_progress: bool = True) -> FeatureDataset:
    """Tokenize and lay out every example for ``backbone``; labels become class indices
    (-100 for unlabeled rows)."""
    features = []
    for ex in tqdm(examples, desc="tokenizing", disable=not show_progress, leave=False,
                   mininterval=1.0):
        ids_a = backbone.encode_text(ex.text_a)
        ids_b = backbone.encode_text(ex.text_b) if ex.text_b is not None else None
        f = backbone.encode(ids_a, ids_b, max_len, cloze_template)
        f["labels"] = task.label_index(ex.label) if ex.label is not None else -100
        features.append(f)
    return FeatureDataset(features)


def make_loader(dataset: FeatureDataset, backbone, batch_size: int, *, shuffle: bool = False,
                sampler=None, seed: int = 0) -> DataLoader:
    """Batches padded by the backbone (labels included). The loader draws its seeds from its
    own generator, not the global RNG, so that starting an epoch leaves dropout's random stream
    untouched."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, collate_fn=backbone.collate,
                      generator=torch.Generator().manual_seed(seed))
