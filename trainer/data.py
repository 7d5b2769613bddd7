"""Training data: species, their clips, images and prompts, and the per-epoch clip sampler.

Sources are the biovita manifest CSV (``taxa.csv`` beside it names the species) or tar shards
(``trainer.shards``). Species order is the taxa table's: it is the order of the species bank.

Every random choice of one example (prompt template, image, crop, gain) comes from a generator
seeded by ``(seed, epoch, position)``, not from a shared stream, so a resumed run draws exactly
what an uninterrupted one would, and DDP ranks never draw the same example twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from biovita.audio import load_audio
from biovita.errors import ManifestError
from biovita.frontend import FrontendSpec
from biovita.manifest import ManifestRow, read_manifest, read_taxa
from biovita.taxonomy import PROMPT_TEMPLATES, Taxon, prompts
from trainer.images import to_pil

ImageSource = Path | bytes


@dataclass
class Clip:
    species: int  # index into taxa
    key: str  # audio path or shard key, for messages
    load: Callable[[], np.ndarray]  # mono float32 at the front-end rate


@dataclass
class SpeciesData:
    """Taxa (bank order), clips of one or more splits, and every image grouped by species."""

    taxa: list[Taxon]
    clips: list[Clip]
    images: list[ImageSource] = field(default_factory=list)
    images_of: list[list[int]] = field(default_factory=list)  # per species: indices into images
    frontend: FrontendSpec = field(default_factory=FrontendSpec)

    def __post_init__(self) -> None:
        if not self.images_of:
            self.images_of = [[] for _ in self.taxa]
        self.prompt_texts = [prompts(t) for t in self.taxa]
        self._pcm: dict[int, np.ndarray] = {}
        self._image: dict[int, object] = {}

    @property
    def species_ids(self) -> list[str]:
        return [t.species_id for t in self.taxa]

    def clips_of(self) -> list[list[int]]:
        by_species: list[list[int]] = [[] for _ in self.taxa]
        for i, clip in enumerate(self.clips):
            by_species[clip.species].append(i)
        return by_species

    def pcm(self, i: int) -> np.ndarray:
        """The decoded clip, kept in RAM: a 3-s clip is 192 kB, the default world ~400 MB."""
        if i not in self._pcm:
            self._pcm[i] = self.clips[i].load()
        return self._pcm[i]

    def image(self, i: int):
        """Image ``i`` decoded (PIL RGB), kept in RAM: world images are a few kB each."""
        if i not in self._image:
            self._image[i] = to_pil(self.images[i])
        return self._image[i]

    def window(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """One front-end window of clip ``i``: the middle of a longer clip, a short one zero-padded
        at the end; with ``rng``, at a random time offset.

        A recorder's windows fall on calls at any offset, down to a fraction of a front-end hop,
        so training must not see a clip at one alignment only. A longer clip gives a random crop;
        a clip that is one window long (the synthetic world's) is rotated by a random number of
        samples instead, so its call lands anywhere, at any sub-hop phase; a call rotated across
        the end wraps round to the start, beside the clip's own background. Without this, a tower
        trained on the default world moved its embedding to a cosine of 0.74 and kept its top-1
        species on 35% of call windows when the window was shifted by one 20-ms hop (issue 5).
        """
        pcm, n = self.pcm(i), self.frontend.window_samples
        if len(pcm) < n:
            pcm = np.pad(pcm, (0, n - len(pcm)))
        spare = len(pcm) - n
        if rng is None:
            return pcm[spare // 2 : spare // 2 + n]
        if spare == 0:
            return np.roll(pcm, int(rng.integers(0, n)))
        start = int(rng.integers(0, spare + 1))
        return pcm[start : start + n]


def _species_index(taxa: list[Taxon], where: str) -> Callable[[str], int]:
    index = {t.species_id: i for i, t in enumerate(taxa)}

    def lookup(species_id: str) -> int:
        if species_id not in index:
            raise ManifestError(
                f"{where}: species {species_id!r} is not in the taxa table",
                hint="add it to taxa.csv or fix the species_id",
            )
        return index[species_id]

    return lookup


def _segment_loader(row: ManifestRow, sample_rate: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        pcm, _ = load_audio(row.audio_path, sample_rate)
        start = int(round((row.start_s or 0.0) * sample_rate))
        end = len(pcm) if row.end_s is None else int(round(row.end_s * sample_rate))
        return np.ascontiguousarray(pcm[start:end])

    return load


def load_species_data(
    manifest: str | Path,
    splits: Sequence[str] = ("train",),
    taxa_path: str | Path | None = None,
    image_splits: Sequence[str] | None = None,
    frontend: FrontendSpec | None = None,
) -> SpeciesData:
    """Clips of ``splits`` from a manifest; images of ``image_splits`` (default: the same)."""
    manifest = Path(manifest)
    frontend = frontend or FrontendSpec()
    taxa, _ = read_taxa(taxa_path or manifest.parent / "taxa.csv")
    rows = read_manifest(manifest)
    species = _species_index(taxa, str(manifest))
    clips = [
        Clip(species(r.species_id), str(r.audio_path), _segment_loader(r, frontend.sample_rate))
        for r in rows
        if r.split in splits
    ]
    if not clips:
        raise ManifestError(
            f"{manifest} has no clips of split(s) {', '.join(splits)}",
            hint="check the split column (train, test, unseen)",
        )
    images: list[ImageSource] = []
    images_of: list[list[int]] = [[] for _ in taxa]
    seen: set[Path] = set()
    for r in rows:
        if r.split not in (image_splits or splits):
            continue
        for path in r.image_paths:
            if path not in seen:
                seen.add(path)
                images_of[species(r.species_id)].append(len(images))
                images.append(path)
    return SpeciesData(taxa, clips, images, images_of, frontend)


@dataclass
class Batch:
    species: torch.Tensor  # [B] long, index into taxa
    prompts: list[str]  # one sampled prompt text per example
    images: torch.Tensor  # [B] long, index into SpeciesData.images, -1 if the species has none
    clips: torch.Tensor  # [B] long, index into SpeciesData.clips (-1 when sampling images)
    pcm: torch.Tensor | None = None  # [B, window_samples] float32 when sampling clips


class EpochSampler:
    """A stream of batches over epochs of at most ``per_species`` items per species.

    Items are clips (stages 1, 2, distillation) or images (stage 0). BioVITA caps clips per species
    per epoch (20) so abundant species do not drown rare ones. An epoch's order is a pure function
    of (seed, epoch); with DDP each rank takes every ``world_size``-th item of it. ``state_dict``
    is the position in that stream.
    """

    def __init__(
        self,
        data: SpeciesData,
        batch_size: int,
        per_species: int = 20,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        unit: str = "clips",
        augment: bool = True,
    ) -> None:
        if unit not in ("clips", "images"):
            raise ValueError(f"unit must be clips or images, not {unit!r}")
        self.data, self.batch_size, self.per_species = data, batch_size, per_species
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.unit, self.augment = unit, augment
        self.items_of = data.clips_of() if unit == "clips" else data.images_of
        if not any(self.items_of):
            raise ManifestError(f"no {unit} to train on", hint=f"the manifest lists no {unit}")
        self._species_of = {i: s for s, items in enumerate(self.items_of) for i in items}
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, epoch))
        chosen = [rng.permutation(items)[: self.per_species] for items in self.items_of if items]
        order = rng.permutation(np.concatenate(chosen).astype(np.int64))
        per_rank = len(order) // self.world_size
        return order[self.rank :: self.world_size][:per_rank]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._epoch_order(self.epoch)

    def _next_item(self) -> tuple[int, np.random.Generator]:
        if self.cursor >= len(self._order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        item = int(self._order[self.cursor])
        rng = np.random.default_rng((self.seed, self.epoch, self.cursor, self.rank, 1))
        self.cursor += 1
        return item, rng

    def next_batch(self) -> Batch:
        species, texts, images, clips, pcm = [], [], [], [], []
        for _ in range(self.batch_size):
            item, rng = self._next_item()
            s = self._species_of[item]
            if self.unit == "clips":
                own = self.data.images_of[s]
                image = own[rng.integers(len(own))] if own else -1
                window = self.data.window(item, rng if self.augment else None)
                if self.augment:  # recorders differ in gain by tens of dB
                    gain = np.float32(10 ** (rng.uniform(-12, 6) / 20))
                    window = np.clip(window * gain, -1.0, 1.0)  # a recorder clips, never exceeds
                pcm.append(window)
                clips.append(item)
            else:
                image = item
                clips.append(-1)
            species.append(s)
            images.append(image)
            texts.append(self.data.prompt_texts[s][rng.integers(len(PROMPT_TEMPLATES))])
        return Batch(
            species=torch.tensor(species, dtype=torch.long),
            prompts=texts,
            images=torch.tensor(images, dtype=torch.long),
            clips=torch.tensor(clips, dtype=torch.long),
            pcm=torch.from_numpy(np.stack(pcm).astype(np.float32)) if pcm else None,
        )
