"""A quick in-training check: species Top-1 of held-out clips against text and image prototypes.

Not the benchmark (``biovita-bench retrieval`` is): a cheap number per stage to tune with, over
every species of the bank (chance = 1 / species).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.bank import image_prototypes, text_prototypes
from trainer.data import SpeciesData
from trainer.embed import Embedder


class Windows(Sequence):
    """Every clip's centre window, decoded when sliced: an evaluation holds one batch at a time."""

    def __init__(self, data: SpeciesData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.clips)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.data.window(i) for i in range(*index.indices(len(self)))]
        return self.data.window(index)


def quick_eval(embedder: Embedder, data: SpeciesData) -> dict[str, float]:
    """Top-1 of A->T (text prototypes) and A->I (image prototypes) over ``data``'s clips."""
    truth = np.array([c.species for c in data.clips])
    audio = embedder.audio(Windows(data))
    text = text_prototypes(embedder, data)
    image, has_image = image_prototypes(embedder, data)
    image_scores = np.where(has_image[None, :], audio @ image.T, -np.inf)
    return {
        "a2t_top1": float(np.mean((audio @ text.T).argmax(axis=1) == truth)),
        "a2i_top1": float(np.mean(image_scores.argmax(axis=1) == truth)),
        "n_clips": len(truth),
        "n_species": len(data.taxa),
    }
