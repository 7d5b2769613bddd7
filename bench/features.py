"""Frozen embeddings of every benchmark item, computed once per model and reused by every task.

A model enters the benchmark through the small ``Embedder`` port below (the trainer's
``trainer.embed.Embedder`` and the bundle's ONNX tower both fit it). What the scorers then see is
a ``Features`` object: for a direction and a level, the query table and the gallery table. The
ordinary ``FeatureSet`` answers with its own audio/image/text tables; ``ChainFeatures`` (the
zero-shot chain baseline) answers cross-modal audio<->image with a text pivot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from bench.protocol import TEXT_ANY_LEVEL, BenchmarkIndex, Direction
from biovita.audio import load_audio, windows
from biovita.bank import l2_normalise
from biovita.crop import onset_crop
from biovita.errors import AudioError, BiovitaError
from biovita.frontend import FrontendSpec


class Embedder(Protocol):
    """Anything that maps audio, images and texts into one L2-normalised space."""

    name: str
    dim: int
    frontend: FrontendSpec

    def audio(self, pcm: np.ndarray) -> np.ndarray:
        """``[B, window_samples]`` float32 PCM at ``frontend.sample_rate`` -> ``[B, D]``."""
        ...

    def images(self, images: Sequence[Path | np.ndarray]) -> np.ndarray: ...

    def texts(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Table:
    """Embeddings of one modality, row ``k`` belonging to item ``ids[k]`` (ids sorted)."""

    ids: np.ndarray
    vectors: np.ndarray

    @classmethod
    def from_dict(cls, by_id: dict[int, np.ndarray]) -> Table:
        ids = np.array(sorted(by_id), dtype=np.int64)
        if not len(ids):
            return cls(ids, np.zeros((0, 1), dtype=np.float32))
        return cls(ids, l2_normalise(np.stack([by_id[int(i)] for i in ids])))

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, or -1 where this table has no such id."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.ids):
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        return np.where(self.ids[pos] == ids, pos, -1)


class Features(Protocol):
    name: str

    def pair(self, direction: Direction, level: str) -> tuple[Table, Table]:
        """(query table, gallery table) of ``direction`` at ``level``."""
        ...


@dataclass
class FeatureSet:
    """One model's embeddings of one benchmark index."""

    name: str
    audio: Table | None = None
    image: Table | None = None
    text: dict[str, Table] = field(default_factory=dict)
    unreadable: dict[str, list[str]] = field(default_factory=dict)  # modality -> "path: why"

    def table(self, modality: str, level: str = TEXT_ANY_LEVEL) -> Table:
        if modality == "text":
            found = self.text.get(level) or self.text.get(TEXT_ANY_LEVEL)
        else:
            found = getattr(self, modality)
        if found is None:
            raise BiovitaError(
                f"model {self.name} has no {modality} embeddings",
                hint="this checkpoint lacks that tower (e.g. stage 0 has no audio tower)",
            )
        return found

    def pair(self, direction: Direction, level: str) -> tuple[Table, Table]:
        return self.table(direction.query, level), self.table(direction.gallery, level)


@dataclass
class ChainFeatures:
    """The zero-shot chain: audio<->text by the stage-1 model, image<->text by the image-text
    model, and audio<->image through a text pivot (the best-matching text of one model stands in
    for the query in the other model's space)."""

    name: str
    audio_text: FeatureSet
    image_text: FeatureSet

    def _pivot(self, queries: Table, texts_from: Table, texts_to: Table) -> Table:
        best = np.argmax(queries.vectors @ texts_from.vectors.T, axis=1)
        pivots = texts_to.vectors[texts_to.positions(texts_from.ids[best])]
        return Table(queries.ids, pivots)

    def pair(self, direction: Direction, level: str) -> tuple[Table, Table]:
        mods = {direction.query, direction.gallery}
        if mods == {"audio", "text"}:
            return self.audio_text.pair(direction, level)
        if mods == {"image", "text"}:
            return self.image_text.pair(direction, level)
        at_text, it_text = (
            self.audio_text.table("text", level),
            self.image_text.table("text", level),
        )
        if direction.query == "audio":  # A -> text (stage 1) -> image (image-text model)
            query = self._pivot(self.audio_text.table("audio"), at_text, it_text)
            return query, self.image_text.table("image")
        query = self._pivot(self.image_text.table("image"), it_text, at_text)
        return query, self.audio_text.table("audio")


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


def _batched(items: list, size: int) -> list[list]:
    return [items[k : k + size] for k in range(0, len(items), size)]


def embed_audio_files(
    embed: Callable[[np.ndarray], np.ndarray],
    paths: dict[int, Path],
    frontend: FrontendSpec,
    batch_windows: int = 64,
    desc: str = "audio",
    unreadable: list[str] | None = None,
    crop: str | None = None,
) -> Table:
    """One vector per file: the re-normalised mean over its windows (one window for a 3 s clip;
    a longer recording is covered by the device's own windows and hop). With ``unreadable``, a
    file that is missing or cannot be decoded is left out and listed there instead of raising.
    ``crop="onset10"``: each file is first cut to the official evaluation's 10 s from its onset
    (``biovita.crop.onset_crop``)."""
    window, hop = frontend.window_samples, frontend.hop_samples
    owners: list[int] = []
    chunks: list[np.ndarray] = []
    for i, path in sorted(paths.items()):
        try:
            pcm, _ = load_audio(path, frontend.sample_rate)
        except AudioError as err:  # a missing or broken file of a published benchmark
            if unreadable is None:
                raise
            unreadable.append(f"{path}: {err}")
            continue
        if crop == "onset10":
            pcm = onset_crop(pcm, frontend.sample_rate, int(10.0 * frontend.sample_rate))
        w = windows(pcm, window, hop)
        owners.extend([i] * len(w))
        chunks.append(w)
    if not chunks:
        return Table.from_dict({})
    all_windows = np.concatenate(chunks)
    out = [
        np.asarray(embed(all_windows[k : k + batch_windows]), dtype=np.float32)
        for k in tqdm(range(0, len(all_windows), batch_windows), desc=desc, leave=False)
    ]
    vectors = np.concatenate(out)
    sums: dict[int, np.ndarray] = {}
    for owner, v in zip(owners, vectors, strict=True):
        sums[owner] = sums[owner] + v if owner in sums else v.astype(np.float64)
    return Table.from_dict(sums)


def _readable_images(items: dict[int, object], unreadable: list[str]) -> dict[int, object]:
    """The images that exist and decode (PIL's check), listing the others in ``unreadable``."""
    from PIL import Image, UnidentifiedImageError

    kept = {}
    for i, item in items.items():
        if not isinstance(item, (str, Path)):
            kept[i] = item
            continue
        try:
            with Image.open(item) as img:
                img.verify()
        except (OSError, UnidentifiedImageError) as err:
            unreadable.append(f"{item}: {err}")
            continue
        kept[i] = item
    return kept


def _embed_list(embed: Callable, items: dict[int, object], batch: int, desc: str) -> Table:
    ids = sorted(items)
    vectors = [
        np.asarray(embed([items[i] for i in chunk]), dtype=np.float32)
        for chunk in tqdm(_batched(ids, batch), desc=desc, leave=False)
    ]
    if not ids:
        return Table.from_dict({})
    return Table(np.array(ids, dtype=np.int64), l2_normalise(np.concatenate(vectors)))


def extract_features(
    embedder: Embedder,
    index: BenchmarkIndex,
    modalities: Sequence[str] = ("audio", "image", "text"),
    name: str | None = None,
    crop: str | None = None,
) -> FeatureSet:
    """Embed every item of ``index`` in the asked modalities (texts once per distinct text set).

    Missing or undecodable media are left out and listed in ``unreadable`` (their queries are
    then counted as not embedded); a model without an audio tower (an image/text model such as
    vanilla BioCLIP 2) gets no audio table, so only its I<->T directions are scored."""
    name = name or embedder.name
    features = FeatureSet(name)
    if "audio" in modalities and index.audio and getattr(embedder, "has_audio", True):
        bad = features.unreadable.setdefault("audio", [])
        features.audio = embed_audio_files(
            embedder.audio,
            index.audio,
            embedder.frontend,
            desc=f"{name}: audio",
            unreadable=bad,
            crop=crop,
        )
    if "image" in modalities and index.image:
        images = _readable_images(index.image, features.unreadable.setdefault("image", []))
        features.image = _embed_list(embedder.images, images, 64, f"{name}: images")
    if "text" in modalities:
        done: dict[int, Table] = {}
        for level, texts in index.text.items():
            key = id(texts)
            if key not in done:
                done[key] = _embed_list(embedder.texts, texts, 256, f"{name}: texts")
            features.text[level] = done[key]
    return features
