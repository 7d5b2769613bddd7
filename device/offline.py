"""``biovita-field classify``: the listen pipeline run over files as fast as possible.

Each file is its own stream (times are seconds from the file's start, the BirdNET-Analyzer
convention); a file that fails is reported and skipped, the rest are classified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from biovita.audio import audio_info
from biovita.bank import SpeciesBank
from biovita.bundle import Bundle
from biovita.errors import AudioError
from device.app import build_pipeline, detection_context, min_rate
from device.classify import UNKNOWN
from device.config import DeviceConfig
from device.outputs import ResultRow
from device.pipeline import event_to_detection
from device.records import Backend, Event
from device.sources import expand_paths, read_file_blocks
from device.store import Store
from device.stream import prefetched

log = logging.getLogger(__name__)

DECODE_BLOCK_S = 20.0  # decoded on a thread while the tower runs on the previous block


@dataclass
class OfflineResult:
    rows: dict[str, list[ResultRow]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    audio_s: float = 0.0
    windows: int = 0
    silent_windows: int = 0  # below classify.silence_dbfs: not classified


def _duration(path: Path) -> float:
    try:
        return float(audio_info(path).duration)
    except AudioError:
        return 0.0


def classify_files(
    path: Path,
    bundle: Bundle,
    cfg: DeviceConfig,
    backend: Backend,
    store: Store | None = None,
    progress: bool = True,
) -> OfflineResult:
    files = expand_paths(path)
    result = OfflineResult()
    bank = bundle.bank
    ctx = detection_context(bundle, cfg, backend)
    total = sum(_duration(f) for f in files)
    with tqdm(total=round(total), unit="s audio", disable=not progress, leave=False) as bar:
        for file in files:
            pipeline = build_pipeline(bundle, cfg, backend)
            events: list[Event] = []
            try:
                blocks = read_file_blocks(
                    file,
                    bundle.manifest.frontend.sample_rate,
                    DECODE_BLOCK_S,
                    cfg.audio.channel,
                    min_rate(bundle, cfg),
                )
                for block in prefetched(blocks):
                    pipeline.push(block)
                    if pipeline.ready():
                        events += pipeline.drain()
                    seconds = len(block.samples) / block.sample_rate
                    result.audio_s += seconds
                    bar.update(seconds)
                events += pipeline.finish()
            except AudioError as err:
                events += pipeline.finish()  # what was read before the damage is real audio
                result.errors[str(file)] = err.describe()
                log.error("%s", err.describe())
            result.windows += pipeline.windows_classified
            result.silent_windows += pipeline.windows_silent
            result.rows[str(file)] = [_row(file, e, bank) for e in events]
            if store is not None and events:
                store.add([event_to_detection(e, bank, ctx) for e in events])
    return result


def _row(file: Path, event: Event, bank: SpeciesBank) -> ResultRow:
    if event.species_id == UNKNOWN:
        names = ("", "unknown")
    else:
        taxon = bank.taxon(event.species_id)
        names = (taxon.scientific_name, taxon.common_name)
    return ResultRow(
        file=str(file),
        start_s=round(event.start_s, 3),
        end_s=round(event.end_s, 3),
        species_id=event.species_id,
        scientific_name=names[0],
        common_name=names[1],
        score=round(event.score, 4),
        similarity=round(event.similarity, 4),
        windows=event.windows,
    )
