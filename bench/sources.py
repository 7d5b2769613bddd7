"""Benchmark items from a data folder: the synthetic world, or a user's own recordings.

The folder holds ``manifest.csv`` and ``taxa.csv`` (``biovita.manifest``), and optionally
``images.csv`` (image_path,species_id,split) and ``texts.csv`` (species_id,template,text), as
``biovita-bench world`` writes them. Without ``images.csv`` the images are the manifest rows'
``image_paths``; without ``texts.csv`` the texts are ``biovita.taxonomy.prompts`` of each taxon.

Splits (queries are never training items):

* ``seen``: queries and galleries are the held-out ``test`` clips/images of trained species.
* ``unseen``: queries are the ``unseen`` rows (species never trained); galleries hold the unseen
  species *and* the seen species' test items. Candidates are then drawn from every species, as a
  recorder's bank would hold them: 100 candidates and 1% chance as on the seen split, and a
  genus/family answer can be a trained congener (the unseen species are spread over the tree, so
  few have an unseen congener). Its index is also the "every held-out item" set the trait probes
  use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.protocol import TEXT_ANY_LEVEL, BenchmarkIndex
from biovita.errors import ManifestError
from biovita.manifest import read_csv_rows, read_manifest, read_taxa
from biovita.taxonomy import Taxon, prompts

GALLERY_SPLITS = {"seen": ("test",), "unseen": ("test", "unseen")}
QUERY_SPLIT = {"seen": "test", "unseen": "unseen"}


def _read_optional_csv(path: Path, required: set[str]) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    return read_csv_rows(
        path, required, columns_hint=f"its header must include {', '.join(sorted(required))}"
    )


@dataclass
class DataFolder:
    """Taxa, traits and the items of each split of one data folder."""

    root: Path
    taxa: dict[str, Taxon]
    traits: dict[str, dict[str, str]]
    _audio: list[tuple[Path, str, str]]  # (path, species, manifest split)
    _images: list[tuple[Path, str, str]]
    _texts: dict[str, list[str]]

    @classmethod
    def open(cls, root: str | Path) -> DataFolder:
        root = Path(root)
        if not (root / "manifest.csv").is_file():
            raise ManifestError(
                f"{root} holds no manifest.csv",
                hint="pass a world folder (biovita-bench world --out DIR) or your data folder",
            )
        taxa_list, traits = read_taxa(root / "taxa.csv")
        taxa = {t.species_id: t for t in taxa_list}
        rows = read_manifest(root / "manifest.csv")
        unknown = sorted({r.species_id for r in rows} - set(taxa))
        if unknown:
            raise ManifestError(
                f"manifest.csv names species missing from taxa.csv: {unknown[:5]}",
                hint="add them to taxa.csv",
            )
        audio = sorted((r.audio_path, r.species_id, r.split) for r in rows)
        image_rows = _read_optional_csv(root / "images.csv", {"image_path", "species_id", "split"})
        if image_rows is not None:
            images = sorted(
                (root / r["image_path"], r["species_id"], r["split"]) for r in image_rows
            )
        else:
            images = sorted({(p, r.species_id, r.split) for r in rows for p in r.image_paths})
        text_rows = _read_optional_csv(root / "texts.csv", {"species_id", "text"})
        texts: dict[str, list[str]] = {}
        if text_rows is not None:
            for r in text_rows:
                texts.setdefault(r["species_id"], []).append(r["text"])
        else:
            texts = {sid: prompts(t) for sid, t in taxa.items()}
        return cls(root, taxa, traits, audio, images, texts)

    def index(self, split: str) -> BenchmarkIndex:
        """Items of one split with sequential integer ids (audio, then images, then texts)."""
        if split not in QUERY_SPLIT:
            raise ManifestError(f"unknown split {split!r}", hint="use seen or unseen")
        wanted = GALLERY_SPLITS[split]
        index = BenchmarkIndex()
        next_id = 0
        species_present: set[str] = set()
        query_species: set[str] = set()
        for modality, items in (("audio", self._audio), ("image", self._images)):
            store = getattr(index, modality)
            for path, species, row_split in items:
                if row_split not in wanted:
                    continue
                store[next_id] = path
                index.species[(modality, next_id)] = species
                species_present.add(species)
                if row_split == QUERY_SPLIT[split]:
                    query_species.add(species)
                next_id += 1
        index.text[TEXT_ANY_LEVEL] = {}
        for species in sorted(species_present):
            for text in self._texts.get(species, []):
                index.text[TEXT_ANY_LEVEL][next_id] = text
                index.species[("text", next_id)] = species
                next_id += 1
        if not query_species:
            raise ManifestError(
                f"{self.root}: no clips or images in split {QUERY_SPLIT[split]!r}",
                hint="the manifest's split column needs test (seen) and unseen rows",
            )
        index.query_species = frozenset(query_species)
        return index
