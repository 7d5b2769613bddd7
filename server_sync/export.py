"""Reviews back into training: confirmed and relabelled detections as a training manifest.

The manifest is the trainer's own format (``biovita.manifest``): one row per reviewed clip with
the species the reviewer settled on, split ``train``, and ``source`` naming the detection and the
reviewer so every training example can be traced back to a person's decision.

Species ids come from devices (or a relabel), so a cell a spreadsheet would run as a formula
(``=HYPERLINK(...)``, ``+``, ``-``, ``@``, a tab or a carriage return first) gets a leading ``'``,
as OWASP's CSV-injection advice says; no real species id starts with one of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biovita.manifest import ManifestRow, write_manifest
from server_sync.clips import ClipStore
from server_sync.store import Store


@dataclass(frozen=True)
class ExportReport:
    path: Path
    written: int
    without_clip: int  # reviewed, but its clip never arrived (or there was none)
    missing_file: int  # the clip row exists but the file is gone


def export_reviewed(
    store: Store, clips: ClipStore, out: Path, split: str = "train"
) -> ExportReport:
    rows, without_clip, missing = [], 0, 0
    for item in store.export_rows():
        if item.clip_path is None:
            without_clip += 1
            continue
        path = clips.resolve(item.clip_path)
        if not path.is_file():
            missing += 1
            continue
        rows.append(
            ManifestRow(
                audio_path=path,
                species_id=csv_cell(item.species_id),
                split=csv_cell(split),
                source=f"review:{item.verdict.value}:{item.reviewer}:{item.detection_id}",
            )
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(out, rows)
    return ExportReport(out, len(rows), without_clip, missing)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text``, made inert for spreadsheets if it would start a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
