"""The training-data manifest: one CSV that users fill from their own recordings.

Columns (paths are relative to the manifest's folder, or absolute)::

    audio_path     a clip of one species (WAV/FLAC/OGG/...)
    species_id     an id from the taxa table (taxa.csv)
    split          train | test | unseen (any other text is kept as-is)
    image_paths    optional images of the species, ';'-separated
    start_s,end_s  optional: the event inside a longer file (empty: the whole file)
    source         optional free text (recorder, reviewer, world seed, ...)

The synthetic world writes this format, ``biovita-server export-reviewed`` writes it from reviews,
and the trainer reads it; ``taxa.csv`` beside it names the species (see ``biovita.taxonomy``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from biovita.errors import ManifestError
from biovita.taxonomy import Taxon

MANIFEST_COLUMNS = (
    "audio_path",
    "species_id",
    "split",
    "image_paths",
    "start_s",
    "end_s",
    "source",
)
TAXA_FIELDS = tuple(Taxon.model_fields)


@dataclass(frozen=True)
class ManifestRow:
    audio_path: Path
    species_id: str
    split: str = "train"
    image_paths: tuple[Path, ...] = ()
    start_s: float | None = None
    end_s: float | None = None
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)


def _resolve(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base / path


def _optional_float(text: str | None, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ManifestError(
            f"{where}: {text!r} is not a number", hint="use seconds, e.g. 1.5"
        ) from None


def read_csv_rows(
    path: str | Path,
    required: Iterable[str],
    columns_hint: str,
    name: str = "",
    missing_hint: str = "check the path",
) -> list[dict[str, str]]:
    """Every row of a CSV file whose header holds the ``required`` columns, else a clear error.

    ``name`` ("manifest", "ground truth") leads the messages; the hints say how to fix them.
    """
    path = Path(path)
    label = f"{name} {path}" if name else str(path)
    if not path.is_file():
        raise ManifestError(f"{label} does not exist", hint=missing_hint)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(required) - set(reader.fieldnames or ())
        if missing:
            raise ManifestError(f"{label} lacks column(s) {sorted(missing)}", hint=columns_hint)
        return list(reader)


def read_manifest(path: str | Path, check_files: bool = False) -> list[ManifestRow]:
    path = Path(path)
    base = path.parent
    table = read_csv_rows(
        path,
        {"audio_path", "species_id"},
        columns_hint=f"the header must include {', '.join(MANIFEST_COLUMNS)}",
        name="manifest",
    )
    rows = []
    for line, raw in enumerate(table, start=2):
        where = f"{path}:{line}"
        if not raw["audio_path"] or not raw["species_id"]:
            raise ManifestError(f"{where}: empty audio_path or species_id", hint="fill both")
        images = tuple(
            _resolve(base, p) for p in (raw.get("image_paths") or "").split(";") if p.strip()
        )
        row = ManifestRow(
            audio_path=_resolve(base, raw["audio_path"]),
            species_id=raw["species_id"],
            split=(raw.get("split") or "train").strip(),
            image_paths=images,
            start_s=_optional_float(raw.get("start_s"), where),
            end_s=_optional_float(raw.get("end_s"), where),
            source=raw.get("source") or "",
            extra={k: v for k, v in raw.items() if k not in MANIFEST_COLUMNS and k},
        )
        if check_files and not row.audio_path.is_file():
            raise ManifestError(f"{where}: {row.audio_path} does not exist", hint="fix the path")
        rows.append(row)
    return rows


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> Path:
    """Write rows with paths relative to the manifest's folder where possible."""
    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path) -> str:
        try:
            return Path(p).resolve().relative_to(base).as_posix()
        except ValueError:
            return str(p)

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    rel(r.audio_path),
                    r.species_id,
                    r.split,
                    ";".join(rel(p) for p in r.image_paths),
                    "" if r.start_s is None else f"{r.start_s:g}",
                    "" if r.end_s is None else f"{r.end_s:g}",
                    r.source,
                ]
            )
    return path


def read_taxa(path: str | Path) -> tuple[list[Taxon], dict[str, dict[str, str]]]:
    """``taxa.csv`` -> taxa in file order, and per species its ``trait_*`` columns."""
    rows = read_csv_rows(
        path,
        {"species_id"},
        columns_hint="see biovita.manifest",
        name="taxa table",
        missing_hint="write taxa.csv beside it",
    )
    taxa, traits = [], {}
    for raw in rows:
        taxon = Taxon(**{k: raw.get(k) or "" for k in TAXA_FIELDS})
        taxa.append(taxon)
        traits[taxon.species_id] = {
            k.removeprefix("trait_"): v for k, v in raw.items() if k.startswith("trait_")
        }
    return taxa, traits


def write_taxa(
    path: str | Path, taxa: list[Taxon], traits: dict[str, dict[str, str]] | None = None
) -> Path:
    path = Path(path)
    traits = traits or {}
    names = sorted({name for t in traits.values() for name in t})
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*TAXA_FIELDS, *(f"trait_{n}" for n in names)])
        for t in taxa:
            row_traits = traits.get(t.species_id, {})
            writer.writerow(
                [getattr(t, k) for k in TAXA_FIELDS] + [row_traits.get(n, "") for n in names]
            )
    return path
