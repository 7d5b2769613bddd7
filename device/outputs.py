"""Offline result files in the formats BirdNET-Analyzer users already open.

Every audio file gets its own results as soon as it is classified: ``NAME.EXT.biovita.results.csv``
(always: it is also the record that ``--resume`` trusts), and on request a Raven Pro selection
table (``.biovita.selection.table.txt``) and an Audacity label track (``.biovita.labels.txt``).
They keep the audio's extension (``rec.wav`` and ``rec.flac`` never share a table) and mirror the
input's sub-folders under the output folder. ``csv`` and ``json`` also gather every file's
detections in ``detections.csv`` / ``detections.json`` at the end of a run. Times are seconds from
the start of each file. Every file is written to a temporary name and renamed into place, so an
interrupted run leaves whole tables or none.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from biovita.annotations import RAVEN_BOX_COLUMNS

FORMATS = ("csv", "json", "raven", "audacity")
RESULTS_SUFFIX = ".biovita.results.csv"


@dataclass(frozen=True)
class ResultRow:
    file: str
    start_s: float
    end_s: float
    species_id: str
    scientific_name: str
    common_name: str
    score: float
    similarity: float
    windows: int


_TYPES = {f.name: {"float": float, "int": int}.get(f.type, str) for f in fields(ResultRow)}


@dataclass(frozen=True)
class Band:
    """The frequency band a Raven box spans: the front-end's, capped by the file's Nyquist."""

    low_hz: float
    high_hz: float

    @classmethod
    def of(cls, f_min: float, f_max: float, native_rate: int | None) -> Band:
        high = f_max if not native_rate else min(f_max, native_rate / 2)
        return cls(f_min, high)


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


def _field(text: str) -> str:
    """A value safe in a tab-separated line: tabs, newlines and backslashes escaped."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _label(row: ResultRow) -> str:
    return _field(row.common_name or row.scientific_name or row.species_id)


def csv_text(rows: Iterable[ResultRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_TYPES)
    writer.writerows([str(v) for v in asdict(r).values()] for r in rows)
    return out.getvalue()


def read_results_csv(path: Path) -> list[ResultRow]:
    """Rows of a results CSV this module wrote (the same values: floats round-trip as text)."""
    with path.open(newline="", encoding="utf-8") as f:
        return [ResultRow(**{k: _TYPES[k](v) for k, v in r.items()}) for r in csv.DictReader(f)]


def write_json(rows: Iterable[ResultRow], path: Path, errors: dict[str, str] | None = None) -> Path:
    doc = {"detections": [asdict(r) for r in rows], "errors": errors or {}}
    return _atomic_write(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


# BirdNET-Analyzer's selection-table columns, in its order (Raven opens either the same way)
RAVEN_COLUMNS = (
    *RAVEN_BOX_COLUMNS,
    "Common Name",
    "Species Code",
    "Confidence",
    "Begin Path",
    "File Offset (s)",
)


def raven_text(rows: list[ResultRow], band: Band, audio: Path) -> str:
    begin_path = _field(str(audio.resolve()))
    lines = ["\t".join(RAVEN_COLUMNS)]
    for i, r in enumerate(rows, start=1):
        lines.append(
            f"{i}\tSpectrogram 1\t1\t{r.start_s:.3f}\t{r.end_s:.3f}\t{band.low_hz:.0f}\t"
            f"{band.high_hz:.0f}\t{_label(r)}\t{_field(r.species_id)}\t{r.score:.4f}\t"
            f"{begin_path}\t{r.start_s:.3f}"
        )
    return "\n".join(lines) + "\n"


def audacity_text(rows: list[ResultRow]) -> str:
    return "".join(f"{r.start_s:.3f}\t{r.end_s:.3f}\t{_label(r)};{r.score:.3f}\n" for r in rows)


@dataclass(frozen=True)
class FileOutputs:
    """Where one audio file's result tables go."""

    results: Path
    raven: Path
    audacity: Path

    @classmethod
    def of(cls, audio: Path, root: Path, out_dir: Path) -> FileOutputs:
        """``root`` is the folder the run was given (or the file's folder for one file)."""
        relative = audio.relative_to(root) if audio.is_relative_to(root) else Path(audio.name)
        base = out_dir / relative.parent / relative.name
        return cls(
            results=base.with_name(base.name + RESULTS_SUFFIX),
            raven=base.with_name(base.name + ".biovita.selection.table.txt"),
            audacity=base.with_name(base.name + ".biovita.labels.txt"),
        )

    def write(self, audio: Path, rows: list[ResultRow], formats: set[str], band: Band) -> None:
        """The asked tables first, the results CSV last: it marks the file as done."""
        if "raven" in formats:
            _atomic_write(self.raven, raven_text(rows, band, audio))
        if "audacity" in formats:
            _atomic_write(self.audacity, audacity_text(rows))
        _atomic_write(self.results, csv_text(rows))

    def remove(self) -> None:
        """A file that failed this time keeps no table from an earlier run."""
        for path in (self.results, self.raven, self.audacity):
            path.unlink(missing_ok=True)


def write_combined(
    rows: Iterable[ResultRow], out_dir: Path, formats: set[str], errors: dict[str, str]
) -> list[Path]:
    """``detections.csv`` / ``detections.json``: every file's rows in one table."""
    rows = list(rows)
    written = []
    if "csv" in formats:
        written.append(_atomic_write(out_dir / "detections.csv", csv_text(rows)))
    if "json" in formats:
        written.append(write_json(rows, out_dir / "detections.json", errors))
    return written
