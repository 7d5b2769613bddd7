"""Training data: species, their clips, images and prompts, and the per-epoch clip sampler.

Sources are the biovita manifest CSV (``taxa.csv`` beside it names the species) or tar shards
(``trainer.shards``). Species order is the taxa table's: it is the order of the species bank.

Every random choice of one example (prompt template, image, crop, gain) comes from a generator
seeded by ``(seed, epoch, position)``, not from a shared stream, so a resumed run draws exactly
what an uninterrupted one would, and DDP ranks never draw the same example twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from biovita.audio import load_audio, resample
from biovita.errors import ManifestError
from biovita.frontend import FrontendSpec
from biovita.manifest import ManifestRow, read_manifest, read_taxa
from biovita.taxonomy import PROMPT_TEMPLATES, Taxon, prompts
from trainer.images import IMAGE_SUFFIXES, to_pil
from trainer.views import View, centred_window, pad_to, rotated

ImageSource = Path | bytes


@dataclass
class Clip:
    species: int  # index into taxa
    key: str  # audio path or shard key, for messages
    load: Callable[[], np.ndarray]  # mono float32 at the front-end rate
    load_at: Callable[[int], np.ndarray] | None = None  # at any rate, from the source's own


@dataclass
class SpeciesData:
    """Taxa (bank order), clips of one or more splits, and every image grouped by species."""

    taxa: list[Taxon]
    clips: list[Clip]
    images: list[ImageSource] = field(default_factory=list)
    images_of: list[list[int]] = field(default_factory=list)  # per species: indices into images
    frontend: FrontendSpec = field(default_factory=FrontendSpec)
    cache_audio: bool = True  # keep decoded clips in RAM; False: decode on every use

    def __post_init__(self) -> None:
        if not self.images_of:
            self.images_of = [[] for _ in self.taxa]
        self.prompt_texts = [prompts(t) for t in self.taxa]
        self._pcm: dict[int, np.ndarray] = {}
        self._pcm_at: dict[tuple[int, int], np.ndarray] = {}
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
        """The decoded clip, kept in RAM with ``cache_audio`` (a 3-s clip is 192 kB, the default
        world ~400 MB; 1.3 M clips would be 250 GB), else decoded from disk each time."""
        if not self.cache_audio:
            return self.clips[i].load()
        if i not in self._pcm:
            self._pcm[i] = self.clips[i].load()
        return self._pcm[i]

    def image(self, i: int):
        """Image ``i`` decoded (PIL RGB), kept in RAM: world images are a few kB each."""
        if i not in self._image:
            self._image[i] = to_pil(self.images[i])
        return self._image[i]

    def pcm_at(self, i: int, rate: int) -> np.ndarray:
        """Clip ``i`` at ``rate``, resampled once from the source's own rate and kept in RAM (a
        clip that only exists at the front-end rate, e.g. from a shard, from that)."""
        if rate == self.frontend.sample_rate:
            return self.pcm(i)
        if (i, rate) not in self._pcm_at:
            clip = self.clips[i]
            if clip.load_at is not None:
                pcm = clip.load_at(rate)
            else:
                pcm = resample(self.pcm(i), self.frontend.sample_rate, rate)
            self._pcm_at[(i, rate)] = pcm
        return self._pcm_at[(i, rate)]

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
        return self._placed(i, rng)[0]

    def views(
        self, i: int, other: View, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``window(i, rng)`` and, for another tower, its ``other`` view of the same moment: the
        same rotation, or a window centred on the same instant (trainer.views)."""
        window, roll, centre_s = self._placed(i, rng)
        pcm = self.pcm_at(i, other.sample_rate)
        if roll is not None:
            own = int(
                round(self.frontend.window_samples * other.sample_rate / self.frontend.sample_rate)
            )
            pcm = rotated(pad_to(pcm, max(own, len(pcm))), roll)
            centre_s = len(pcm) / 2 / other.sample_rate
        return window, centred_window(pcm, other, centre_s)

    def _placed(self, i: int, rng) -> tuple[np.ndarray, float | None, float]:
        """The window, the rotation (fraction of the clip) or None, and the window's centre (s)."""
        pcm, n, rate = self.pcm(i), self.frontend.window_samples, self.frontend.sample_rate
        if len(pcm) < n:
            pcm = np.pad(pcm, (0, n - len(pcm)))
        spare = len(pcm) - n
        if rng is None:
            start = spare // 2
        elif spare == 0:
            shift = int(rng.integers(0, n))
            return np.roll(pcm, shift), shift / n, n / 2 / rate
        else:
            start = int(rng.integers(0, spare + 1))
        return pcm[start : start + n], None, (start + n / 2) / rate


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


def _segment_loader(row: ManifestRow) -> Callable[[int], np.ndarray]:
    def load(sample_rate: int) -> np.ndarray:  # only the segment is decoded, then resampled
        pcm, _ = load_audio(row.audio_path, sample_rate, start_s=row.start_s, end_s=row.end_s)
        return np.ascontiguousarray(pcm)

    return load


def load_species_data(
    manifest: str | Path,
    splits: Sequence[str] = ("train",),
    taxa_path: str | Path | None = None,
    image_splits: Sequence[str] | None = None,
    frontend: FrontendSpec | None = None,
    cache_audio: bool = True,
) -> SpeciesData:
    """Clips of ``splits`` from a manifest; images of ``image_splits`` (default: the same)."""
    manifest = Path(manifest)
    frontend = frontend or FrontendSpec()
    taxa, _ = read_taxa(taxa_path or manifest.parent / "taxa.csv")
    rows = read_manifest(manifest)
    species = _species_index(taxa, str(manifest))
    loaders = [(r, _segment_loader(r)) for r in rows if r.split in splits]
    rate = frontend.sample_rate
    clips = [
        Clip(species(r.species_id), str(r.audio_path), partial(load, rate), load)
        for r, load in loaders
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
    return SpeciesData(taxa, clips, images, images_of, frontend, cache_audio)


def _species_folders(taxa: list[Taxon], images_dir: Path) -> dict[Path, int]:
    """Sub-folders of ``images_dir`` named by species id or scientific name (``_`` for spaces)."""
    names = {}
    for i, t in enumerate(taxa):
        for name in (t.species_id, t.scientific_name, t.scientific_name.replace(" ", "_")):
            names.setdefault(name.casefold(), i)
    folders, unknown = {}, []
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        if folder.name.casefold() in names:
            folders[folder] = names[folder.name.casefold()]
        else:
            unknown.append(folder.name)
    if unknown:
        raise ManifestError(
            f"{images_dir}: folder(s) {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''} name no species of the taxa table",
            hint="name each folder by a species_id or scientific name of taxa.csv, or remove it",
        )
    return folders


def load_taxa_data(taxa_path: str | Path, images_dir: str | Path | None = None) -> SpeciesData:
    """Species of a taxa table without clips, for a text (and image) bank with no manifest.

    ``images_dir`` holds one folder per species (``DIR/<species_id or Scientific_name>/*.jpg``);
    species without a folder keep a text-only prototype.
    """
    taxa, _ = read_taxa(taxa_path)
    images: list[ImageSource] = []
    images_of: list[list[int]] = [[] for _ in taxa]
    if images_dir is not None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise ManifestError(f"image folder {images_dir} does not exist", hint="check --images")
        for folder, s in _species_folders(taxa, images_dir).items():
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    images_of[s].append(len(images))
                    images.append(path)
        if not images:
            raise ManifestError(
                f"{images_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
                hint="put each species' images in a folder named by its species_id",
            )
    return SpeciesData(taxa, [], images, images_of)


@dataclass
class Batch:
    species: torch.Tensor  # [B] long, index into taxa
    prompts: list[str]  # one sampled prompt text per example
    images: torch.Tensor  # [B] long, index into SpeciesData.images, -1 if the species has none
    clips: torch.Tensor  # [B] long, index into SpeciesData.clips (-1 when sampling images)
    pcm: torch.Tensor | None = None  # [B, window_samples] float32 when sampling clips
    teacher_pcm: torch.Tensor | None = None  # [B, teacher window] the teacher's view, if its own


class EpochCursor:
    """A stream of batches over epochs, each a shuffled order of this rank's items (subclasses
    give ``_epoch_order`` and ``batch_at``), and per drawn item a generator seeded by its place.

    Every epoch has the same length, so the batch starting at any position of the stream is a
    pure function of that position: ``stream(workers)`` makes batches in DataLoader worker
    processes, in order, and a resumed run draws what an uninterrupted one would.
    ``state_dict`` is the position.
    """

    seed: int
    rank: int
    world_size: int
    batch_size: int
    rng_stream = 1  # keeps two kinds of sampler from drawing the same random numbers

    def _start(self, what: str) -> None:
        self._cached_epoch, self._order = 0, self._epoch_order(0)
        self.epoch_length = len(self._order)  # items one epoch gives this rank
        if self.epoch_length == 0:
            raise ManifestError(
                f"an epoch has fewer {what} than the {self.world_size} processes",
                hint="train on more data or with fewer processes",
            )
        self.position = 0  # items drawn so far, over all epochs

    def _epoch_order(self, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def batch_at(self, position: int) -> Batch:
        raise NotImplementedError

    def in_worker(self) -> None:
        """Called in each DataLoader worker process before its first batch."""

    def _order_of(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            self._cached_epoch, self._order = epoch, self._epoch_order(epoch)
        return self._order

    def _item_at(self, position: int) -> tuple[int, np.random.Generator]:
        epoch, cursor = divmod(position, self.epoch_length)
        key = (self.seed, epoch, cursor, self.rank, self.rng_stream)
        return int(self._order_of(epoch)[cursor]), np.random.default_rng(key)

    def state_dict(self) -> dict:
        epoch, cursor = divmod(self.position, self.epoch_length)
        return {"epoch": epoch, "cursor": cursor}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["epoch"] * self.epoch_length + state["cursor"]

    def next_batch(self) -> Batch:
        batch = self.batch_at(self.position)
        self.position += self.batch_size
        return batch

    def stream(self, workers: int = 0) -> Iterator[Batch]:
        """Endless batches from the current position; ``workers`` > 0 makes them in that many
        DataLoader processes (decoding there), while ``position`` counts only those consumed."""
        if workers == 0:
            while True:
                yield self.next_batch()
        starts = itertools.count(self.position, self.batch_size)
        loader = DataLoader(
            _BatchAt(self),
            batch_size=None,
            sampler=starts,
            num_workers=workers,
            worker_init_fn=_worker_init,
        )
        for batch in loader:
            self.position += self.batch_size
            yield batch


class EpochSampler(EpochCursor):
    """A stream of batches over epochs of ``min_per_species`` to ``per_species`` items per species.

    Items are clips (stages 1, 2, distillation) or images (stage 0). BioVITA caps clips per species
    per epoch (20) so abundant species do not drown rare ones, and oversamples a species with
    fewer than 5 (its items, then random repeats up to 5) so rare ones are seen at all. An epoch's
    order is a pure function of (seed, epoch); with DDP each rank takes every ``world_size``-th
    item of it. With ``teacher_view`` (distillation), each batch also carries the teacher's own
    view of the same moment of each clip.
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
        min_per_species: int = 5,
        teacher_view: View | None = None,
    ) -> None:
        if unit not in ("clips", "images"):
            raise ValueError(f"unit must be clips or images, not {unit!r}")
        self.data, self.batch_size, self.per_species = data, batch_size, per_species
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.unit, self.augment = unit, augment
        self.min_per_species = min(min_per_species, per_species)
        self.teacher_view = teacher_view
        self.items_of = data.clips_of() if unit == "clips" else data.images_of
        if not any(self.items_of):
            raise ManifestError(f"no {unit} to train on", hint=f"the manifest lists no {unit}")
        self._species_of = {i: s for s, items in enumerate(self.items_of) for i in items}
        self._start(unit)

    def _draw(self, rng: np.random.Generator, items: list[int]) -> np.ndarray:
        count = min(max(len(items), self.min_per_species), self.per_species)
        shuffled = rng.permutation(items)
        if len(items) >= count:
            return shuffled[:count]
        return np.concatenate([shuffled, rng.choice(items, count - len(items))])

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, epoch))
        chosen = [self._draw(rng, items) for items in self.items_of if items]
        order = rng.permutation(np.concatenate(chosen).astype(np.int64))
        per_rank = len(order) // self.world_size
        return order[self.rank :: self.world_size][:per_rank]

    def in_worker(self) -> None:
        # decode clips on demand, never keep them (each worker would otherwise end up holding
        # its own copy of the data set)
        self.data.cache_audio = False

    def batch_at(self, position: int) -> Batch:
        """The ``batch_size`` items from ``position`` of this rank's stream, augmented."""
        species, texts, images, clips, pcm, teacher = [], [], [], [], [], []
        for p in range(position, position + self.batch_size):
            item, rng = self._item_at(p)
            s = self._species_of[item]
            if self.unit == "clips":
                own = self.data.images_of[s]
                image = own[rng.integers(len(own))] if own else -1
                placed = rng if self.augment else None
                if self.teacher_view is None:
                    window = self.data.window(item, placed)
                else:
                    window, heard = self.data.views(item, self.teacher_view, placed)
                if self.augment:  # recorders differ in gain by tens of dB; a recorder clips
                    gain = np.float32(10 ** (rng.uniform(-12, 6) / 20))
                    window = np.clip(window * gain, -1.0, 1.0)
                    if self.teacher_view is not None:
                        heard = np.clip(heard * gain, -1.0, 1.0)
                pcm.append(window)
                if self.teacher_view is not None:
                    teacher.append(heard)
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
            teacher_pcm=torch.from_numpy(np.stack(teacher).astype(np.float32)) if teacher else None,
        )


def _worker_init(worker: int) -> None:
    get_worker_info().dataset.sampler.in_worker()


class _BatchAt(Dataset):
    """``dataset[position]`` is the sampler's batch from that position (for DataLoader workers)."""

    def __init__(self, sampler: EpochCursor) -> None:
        self.sampler = sampler

    def __getitem__(self, position: int) -> Batch:
        return self.sampler.batch_at(position)
