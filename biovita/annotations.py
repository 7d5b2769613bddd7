"""The annotation tables field recordings travel with: ground-truth CSVs and Raven boxes.

Ground truth is a CSV beside each recording with at least ``start_s,end_s,species_id`` (seconds
from the file's start); other columns are allowed and ignored, except ``snr_db``, which the
synthetic world writes and its tests read. Calibration (``biovita-export calibrate``), the
benchmarks and the world all read it through ``read_truth``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from biovita.errors import ManifestError
from biovita.manifest import read_csv_rows

TRUTH_COLUMNS = ("start_s", "end_s", "species_id")

# The columns every Raven Pro selection table starts with (the box of a selection)
RAVEN_BOX_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
)


@dataclass(frozen=True)
class TruthEvent:
    """One annotated call: seconds from the recording's start, and its species."""

    start_s: float
    end_s: float
    species_id: str
    snr_db: float | None = None  # written by the synthetic world; None in hand-made tables


def read_truth(path: str | Path) -> list[TruthEvent]:
    path = Path(path)
    rows = read_csv_rows(
        path,
        TRUTH_COLUMNS,
        columns_hint="a ground-truth table has the columns start_s,end_s,species_id "
        "(seconds from the file's start; more columns are allowed)",
        name="ground truth",
    )
    events = []
    for line, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
            snr = float(row["snr_db"]) if (row.get("snr_db") or "").strip() else None
        except ValueError as err:
            raise ManifestError(
                f"{path}:{line}: {err}", hint="start_s, end_s (and snr_db) are numbers"
            ) from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start or start < 0:
            raise ManifestError(
                f"{path}:{line}: the call runs from {start} s to {end} s",
                hint="start_s and end_s are seconds from the file's start, start_s <= end_s",
            )
        if not row["species_id"].strip():
            raise ManifestError(f"{path}:{line}: empty species_id", hint="name the species")
        events.append(TruthEvent(start, end, row["species_id"].strip(), snr))
    return events
