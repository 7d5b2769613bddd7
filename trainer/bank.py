"""The species bank: per species, its text prompts and image prototype in one unit vector.

``embedding = normalise((1 - w) * text + w * image)`` where ``text`` is the re-normalised mean of
the species' prompt-template embeddings and ``image`` the re-normalised mean of its image
embeddings; a species without images keeps its text embedding alone. Unseen species enter the
bank through text and images only: that is the zero-shot path.
"""

from __future__ import annotations

import numpy as np

from biovita.bank import SpeciesBank, l2_normalise
from biovita.taxonomy import prompts
from trainer.data import SpeciesData
from trainer.embed import Embedder


def text_prototypes(embedder: Embedder, data: SpeciesData) -> np.ndarray:
    """``[C, D]``: each species' prompt embeddings averaged, then re-normalised."""
    texts = [text for taxon in data.taxa for text in prompts(taxon)]
    per_prompt = embedder.texts(texts).reshape(len(data.taxa), -1, embedder.dim)
    return l2_normalise(per_prompt.mean(axis=1))


def image_prototypes(embedder: Embedder, data: SpeciesData) -> tuple[np.ndarray, np.ndarray]:
    """``[C, D]`` mean image embedding per species (zero rows where none) and a has-image mask."""
    all_images = embedder.images(data.images)  # paths or bytes: decoded batch by batch
    protos = np.zeros((len(data.taxa), embedder.dim), np.float32)
    has = np.array([bool(own) for own in data.images_of])
    for s, own in enumerate(data.images_of):
        if own:
            protos[s] = l2_normalise(all_images[own].mean(axis=0))
    return protos, has


def build_bank(embedder: Embedder, data: SpeciesData, image_weight: float = 0.5) -> SpeciesBank:
    text = text_prototypes(embedder, data)
    image, has_image = image_prototypes(embedder, data)
    w = np.where(has_image, image_weight, 0.0)[:, None].astype(np.float32)
    combined = l2_normalise((1.0 - w) * text + w * image)
    return SpeciesBank(data.taxa, combined, source=f"biovita-train bank {embedder.name}")
