"""``biovita-field classify``: the listen pipeline run over files as fast as possible.

Each file is its own stream (times are seconds from the file's start, the BirdNET-Analyzer
convention) with a fresh pipeline, so a file's rows never depend on the files before it or on
how many worker processes share the run: ``--workers N`` classifies N files at once and gives
exactly the rows one worker gives. The main process writes each file's results the moment the
file is done (``device.outputs``), and ``--resume`` skips the files whose results exist. A file
that fails is reported and skipped: it gets no table of its own (``--resume`` tries it again),
and what it held before the damage stays in the combined tables and the log.

With ``--db`` detections go to the device log under ids derived from the file's identity, the
bundle, the offset and the species, so classifying a card twice stores (and uploads) nothing
new. A detection's UTC time comes from the recording start in the file name (AudioMoth
``YYYYMMDD_HHMMSS``, Wildlife Acoustics ``PREFIX_YYYYMMDD_HHMMSS``) or ``--start-time``; without
either it is a guess from the file's modification time and is marked ``clock_synced`` false.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from biovita.audio import audio_info
from biovita.bank import SpeciesBank
from biovita.bundle import Bundle
from biovita.detection import Detection
from biovita.errors import AudioError, ConfigError
from device.app import build_backend, build_pipeline, detection_context, min_rate, open_bundle
from device.classify import UNKNOWN
from device.config import DeviceConfig
from device.outputs import Band, FileOutputs, ResultRow, read_results_csv, write_combined
from device.pipeline import event_to_detection
from device.records import Backend, Event
from device.sources import DecodeReport, expand_paths, file_start, read_file_blocks
from device.store import Store
from device.stream import prefetched

log = logging.getLogger(__name__)

DECODE_BLOCK_S = 20.0  # decoded on a thread while the tower runs on the previous block
DETECTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "biovita-field/classify/detections")
FINGERPRINT_BYTES = 1 << 20  # the file's name, size, first and last MiB identify it


@dataclass
class FileResult:
    """One file's rows (and detections for the log), or the error that stopped it."""

    file: str
    rows: list[ResultRow] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    error: str | None = None
    audio_s: float = 0.0
    windows: int = 0
    silent_windows: int = 0
    native_rate: int | None = None
    ultrasonic: str | None = None  # most of its energy is above the model's band


@dataclass
class OfflineResult:
    rows: dict[str, list[ResultRow]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # --resume: results already there
    ultrasonic: dict[str, str] = field(default_factory=dict)  # file -> the warning
    written: list[Path] = field(default_factory=list)
    audio_s: float = 0.0
    windows: int = 0
    silent_windows: int = 0  # below classify.silence_dbfs: not classified

    def add(self, r: FileResult) -> None:
        self.rows[r.file] = r.rows
        if r.error is not None:
            self.errors[r.file] = r.error
        if r.ultrasonic is not None:
            self.ultrasonic[r.file] = r.ultrasonic
        self.audio_s += r.audio_s
        self.windows += r.windows
        self.silent_windows += r.silent_windows


def file_fingerprint(path: Path) -> str:
    """What identifies a recording across runs and copies: its name, size and both ends."""
    digest = hashlib.sha256(path.name.encode())
    try:
        size = path.stat().st_size
        digest.update(str(size).encode())
        with path.open("rb") as f:
            digest.update(f.read(FINGERPRINT_BYTES))
            f.seek(max(0, size - FINGERPRINT_BYTES))
            digest.update(f.read(FINGERPRINT_BYTES))
    except OSError:
        pass  # unreadable: decoding fails next and the file gets no detections at all
    return digest.hexdigest()


def detection_id(fingerprint: str, bundle_id: str, event: Event) -> str:
    key = f"{fingerprint}|{bundle_id}|{event.start_sample}|{event.species_id}"
    return str(uuid.uuid5(DETECTION_NAMESPACE, key))


class FileClassifier:
    """A loaded bundle and backend that classify one file at a time (one per worker process)."""

    def __init__(
        self,
        bundle: Bundle,
        cfg: DeviceConfig,
        backend: Backend,
        with_detections: bool = False,
        start_time: datetime | None = None,
    ) -> None:
        self.bundle, self.cfg, self.backend = bundle, cfg, backend
        self.with_detections, self.start_time = with_detections, start_time
        self.ctx = detection_context(bundle, cfg, backend)

    def classify(
        self, file: Path, on_audio: Callable[[float], None] = lambda s: None
    ) -> FileResult:
        bundle, cfg = self.bundle, self.cfg
        pipeline = build_pipeline(bundle, cfg, self.backend)
        start, known = (self.start_time, True) if self.start_time else file_start(file)
        result, report = FileResult(str(file)), DecodeReport()
        expansion = cfg.audio.time_expansion
        events: list[Event] = []
        try:
            blocks = read_file_blocks(
                file,
                bundle.manifest.frontend.sample_rate,
                DECODE_BLOCK_S,
                cfg.audio.channel,
                min_rate(bundle, cfg),
                start,
                expansion,
                report,
            )
            for block in prefetched(blocks):
                pipeline.push(block)
                if pipeline.ready():
                    events += pipeline.drain()
                seconds = len(block.samples) / block.sample_rate / expansion  # real seconds
                result.audio_s += seconds
                on_audio(seconds)
            events += pipeline.finish()
        except AudioError as err:
            events += pipeline.finish()  # what was read before the damage is real audio
            result.error = err.describe()
            log.error("%s", result.error)
        result.native_rate, result.ultrasonic = report.native_rate, report.ultrasonic
        result.windows = pipeline.windows_classified
        result.silent_windows = pipeline.windows_silent
        result.rows = [_row(file, e, bundle.bank) for e in events]
        if self.with_detections:
            fingerprint, ctx = file_fingerprint(file), replace(self.ctx, clock_synced=known)
            bundle_id = bundle.manifest.bundle_id
            result.detections = [
                event_to_detection(
                    e, bundle.bank, ctx, detection_id=detection_id(fingerprint, bundle_id, e)
                )
                for e in events
            ]
        return result


# ------------------------------------------------------------------------ worker processes

_WORKER: FileClassifier | None = None


def _start_worker(cfg: DeviceConfig, with_detections: bool, start_time: datetime | None) -> None:
    global _WORKER
    bundle = open_bundle(cfg)
    _WORKER = FileClassifier(bundle, cfg, build_backend(bundle, cfg), with_detections, start_time)


def _classify_in_worker(file: Path) -> FileResult:
    return _WORKER.classify(file)


def _per_worker(cfg: DeviceConfig, workers: int) -> DeviceConfig:
    """Share the cores: N workers of ``cores / N`` intra-op threads unless threads were set."""
    if cfg.inference.intra_op_threads:
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.inference.intra_op_threads = max(1, (os.cpu_count() or 1) // workers)
    return cfg


def _results(
    files: list[Path],
    bundle: Bundle,
    cfg: DeviceConfig,
    workers: int,
    with_detections: bool,
    start_time: datetime | None,
    bar: tqdm,
) -> Iterator[FileResult]:
    """Each file's result as soon as it is done (in completion order when workers > 1)."""
    if workers == 1:
        classifier = FileClassifier(
            bundle, cfg, build_backend(bundle, cfg), with_detections, start_time
        )
        for file in files:
            yield classifier.classify(file, bar.update)
        return
    # spawn: a forked child would inherit ONNX Runtime's threads mid-state; a fresh one loads
    # its own session (a second or so per worker, once per run)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, context, _start_worker, (_per_worker(cfg, workers), with_detections, start_time)
    ) as pool:
        futures = [pool.submit(_classify_in_worker, f) for f in files]
        try:
            for future in as_completed(futures):
                result = future.result()
                bar.update(result.audio_s)
                yield result
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def classify_batch(
    path: Path,
    bundle: Bundle,
    cfg: DeviceConfig,
    out_dir: Path,
    formats: set[str],
    workers: int = 1,
    resume: bool = False,
    store: Store | None = None,
    start_time: datetime | None = None,
    progress: bool = True,
) -> OfflineResult:
    """Classify ``path`` (a file or folder), writing each file's results as it finishes."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}", hint="use 1 or more")
    files = expand_paths(path)
    if start_time is not None and len(files) > 1:
        raise ConfigError(
            f"--start-time gives one recording's start, but the folder holds {len(files)} files",
            hint="classify that file alone, or name the files YYYYMMDD_HHMMSS as recorders do",
        )
    root = path if path.is_dir() else path.parent
    outputs = {f: FileOutputs.of(f, root, out_dir) for f in files}
    result = OfflineResult()
    todo = []
    for file in files:
        if resume and outputs[file].results.is_file():
            result.rows[str(file)] = read_results_csv(outputs[file].results)
            result.skipped.append(str(file))
        else:
            todo.append(file)
    if result.skipped:
        log.warning("--resume: skipping %d file(s) whose results exist", len(result.skipped))
    spec, expansion = bundle.manifest.frontend, cfg.audio.time_expansion  # Raven: real Hz
    total = sum(_duration(f) for f in todo)
    with tqdm(total=round(total), unit="s audio", disable=not progress, leave=False) as bar:
        workers = min(workers, max(1, len(todo)))
        for done in _results(todo, bundle, cfg, workers, store is not None, start_time, bar):
            result.add(done)
            file = Path(done.file)
            if store is not None and done.detections:
                store.add(done.detections, source_file=str(file.resolve()))
            if done.error is not None:
                outputs[file].remove()
                continue
            band = Band.of(spec.f_min * expansion, spec.f_max * expansion, done.native_rate)
            outputs[file].write(file, done.rows, formats, band)
    result.rows = {str(f): result.rows[str(f)] for f in files if str(f) in result.rows}
    every = [r for rows in result.rows.values() for r in rows]
    result.written = write_combined(every, out_dir, formats, result.errors)
    return result


def _duration(path: Path) -> float:
    try:
        return float(audio_info(path).duration)
    except AudioError:
        return 0.0


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
