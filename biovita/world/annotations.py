"""Soundscape ground truth on disk: a plain CSV for code and a Raven selection table for people.

Raven (Cornell) opens the ``.selections.txt`` beside the WAV and draws a box per call, so a field
ecologist can check the truth by eye and ear.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from biovita import annotations
from biovita.errors import ManifestError
from biovita.world.mixing import SoundEvent

TRUTH_COLUMNS = (*annotations.TRUTH_COLUMNS, "snr_db")
RAVEN_COLUMNS = (*annotations.RAVEN_BOX_COLUMNS, "Species")


def write_truth(path: str | Path, events: list[SoundEvent]) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for e in events:
            writer.writerow([f"{e.start_s:.4f}", f"{e.end_s:.4f}", e.species_id, f"{e.snr_db:.2f}"])
    return path


def read_truth(path: str | Path) -> list[SoundEvent]:
    """The world's truth table (which carries ``snr_db``) through the one ground-truth reader."""
    events = annotations.read_truth(path)
    missing = [e for e in events if e.snr_db is None]
    if missing:
        raise ManifestError(
            f"{path} has no snr_db for the call at {missing[0].start_s} s",
            hint=f"a world's ground-truth table has {', '.join(TRUTH_COLUMNS)}",
        )
    return [SoundEvent(e.start_s, e.end_s, e.species_id, e.snr_db) for e in events]


def write_raven_table(
    path: str | Path,
    events: list[SoundEvent],
    band_hz: Callable[[str], tuple[float, float]],
    label: Callable[[str], str],
) -> Path:
    """A Raven selection table: one spectrogram box per event, labelled ``label(species_id)``."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(RAVEN_COLUMNS)
        for number, e in enumerate(events, start=1):
            low, high = band_hz(e.species_id)
            writer.writerow(
                [
                    number,
                    "Spectrogram 1",
                    1,
                    f"{e.start_s:.4f}",
                    f"{e.end_s:.4f}",
                    f"{low:.1f}",
                    f"{high:.1f}",
                    label(e.species_id),
                ]
            )
    return path


def read_raven_table(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))
