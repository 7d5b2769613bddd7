"""``biovita-field listen``: the daemon's explicit lifecycle (uvicorn style).

The parts arrive built (``device.app.build_daemon`` is the one place that reads the config).
start: start MQTT sync (the store is open, integrity-checked and migrated already).
loop:  blocks -> windows -> (batched) inference -> events -> clips -> ONE SQLite transaction per
       group of detections -> wake the sync. Nothing is published before it is committed.
stop:  on SIGTERM, SIGINT or SIGHUP, the end of a file source, a nearly full disk, a dead MQTT
       network thread or a database deleted under it, ``shutdown`` runs its steps in order, each
       one even if one before it failed: stop capture, commit the tail, drain the outbox (within
       ``mqtt.flush_timeout_s``), publish the offline status, write the last heartbeat, close the
       store, release the data folder, restore the signal handlers.

SIGHUP stops cleanly, like SIGTERM (exit 0); it does not reload in place. Under systemd
(``Restart=always``) the unit then comes straight back, reading its configuration again, so a
HUP is a reload with a fresh process: no half-applied settings, no state to migrate.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from biovita.bank import SpeciesBank
from biovita.detection import DeviceStatus
from device import __version__
from device.clips import ClipRecorder, WrittenClip
from device.lock import DataDirLock
from device.pipeline import DetectionContext, Pipeline, event_to_detection
from device.records import AudioBlock, Event
from device.store import ClipRecord, Store, StoreError
from device.stream import WatchedStream
from device.sync import MqttSync

log = logging.getLogger(__name__)

DISK_CHECK_S = 30.0
HEARTBEAT_S = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def clock_is_synced() -> bool:
    """systemd-timesyncd's flag where it runs; elsewhere assume the clock is right."""
    timesync = Path("/run/systemd/timesync")
    return not timesync.is_dir() or (timesync / "synchronized").exists()


class StatusReport:
    """The ``DeviceStatus`` the sync publishes (retained, and as the Last Will)."""

    def __init__(self, store: Store, context: DetectionContext) -> None:
        self.store, self.context = store, context
        self.started = time.monotonic()

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def __call__(self, online: bool) -> DeviceStatus:
        try:
            free = shutil.disk_usage(self.store.path.parent).free
            depth, clips_bytes, last = (
                self.store.queue_depth(),
                self.store.clips_bytes(),
                self.store.last_detection_utc(),
            )
        except Exception:  # status must never take the daemon down
            free, depth, clips_bytes, last = None, 0, None, None
        return DeviceStatus(
            device_id=self.context.device_id,
            site_id=self.context.site_id,
            online=online,
            uptime_s=self.uptime_s(),
            queue_depth=depth,
            disk_free_bytes=free,
            clips_bytes=clips_bytes,
            bundle_id=self.context.bundle_id,
            backend=self.context.backend,
            software_version=__version__,
            last_detection_utc=last,
        )


class Daemon:
    def __init__(
        self,
        *,
        context: DetectionContext,
        bank: SpeciesBank,
        pipeline: Pipeline,
        stream: WatchedStream,
        clips: ClipRecorder,
        store: Store,
        sync: MqttSync | None,
        status: StatusReport,
        lock: DataDirLock,
        source_kind: str,
        min_free_bytes: int,
        flush_timeout_s: float,
    ) -> None:
        self.context, self.bank, self.pipeline = context, bank, pipeline
        self.stream, self.clips, self.store, self.sync = stream, clips, store, sync
        self.status, self.lock, self.source_kind = status, lock, source_kind
        self.min_free_bytes, self.flush_timeout_s = min_free_bytes, flush_timeout_s
        self.stop_event = stream.stop_event  # a stop request also ends the capture loop
        self.detections = 0
        self.stop_reason = ""
        self.failure: str | None = None  # why the run failed: exit status 1 for systemd
        self.steps_done: list[str] = []  # the shutdown steps that completed, in order
        self._blocks: Iterator[AudioBlock] | None = None
        self._previous_handlers: dict[int, Callable | int | None] = {}

    # --------------------------------------------------------------------------- lifecycle

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP all stop cleanly; the old handlers come back at the end."""
        for sig in STOP_SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        self.request_stop(signal.Signals(signum).name)

    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            log.info("stopping: %s", reason)
            self.stop_reason = reason
        self.stop_event.set()

    def fail(self, reason: str) -> None:
        """Stop with exit status 1: something the daemon cannot fix by itself broke."""
        if self.failure is None:
            log.error("%s: stopping (exit status 1, systemd restarts the unit)", reason)
            self.failure = reason
        self.request_stop(reason)

    def run(self) -> int:
        """0 after a clean stop, 1 after a failure; a ``BiovitaError`` propagates (CLI: exit 2)."""
        try:
            self.start()
            self.loop()
        finally:
            self.shutdown()
        return 1 if self.failure else 0

    def start(self) -> None:
        c = self.context
        log.info(
            "listen start device=%s site=%s bundle=%s backend=%s species=%d store=%s",
            c.device_id,
            c.site_id,
            c.bundle_id,
            c.backend,
            len(self.bank),
            self.store.path,
        )
        if self.sync is not None:
            self.sync.start()

    def loop(self) -> None:
        last_disk = last_beat = 0.0
        self._blocks = self.stream.blocks()
        for block in self._blocks:
            self.pipeline.push(block)
            self.clips.push_audio(block)
            if self.stream.backlog() == 0 or self.pipeline.ready():
                self.clips.add(self.pipeline.drain())
                self._commit(self.clips.ready())
            if self.sync is not None and not self.sync.network_alive():
                self.fail("the MQTT network thread died")
            now = time.monotonic()
            if now - last_disk > DISK_CHECK_S:
                last_disk = now
                self._check_disk()
            if now - last_beat > HEARTBEAT_S:
                last_beat = now
                self._heartbeat()
        if not self.stop_event.is_set():
            self.request_stop("the audio source ended")

    def shutdown(self) -> None:
        """The stop sequence, in order; a failed step is logged and the next one still runs."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("stop capture", self._stop_capture),
            ("commit", self._commit_tail),
            ("drain", self._drain),
            ("publish offline", self._close_sync),
            ("heartbeat", lambda: self._heartbeat(running=False)),
            ("close store", self._close_store),
            ("release data folder", self.lock.release),
            ("restore signal handlers", self._restore_signal_handlers),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as err:  # e.g. a full disk: it must not hide the rest of the stop
                text = err.describe() if isinstance(err, StoreError) else repr(err)
                log.error("stop step %r failed: %s", name, text)
            else:
                self.steps_done.append(name)

    # ------------------------------------------------------------------------ stop steps

    def _stop_capture(self) -> None:
        self.stop_event.set()
        if self._blocks is not None:
            self._blocks.close()  # the stream's finally closes the source

    def _commit_tail(self) -> None:
        self.clips.add(self.pipeline.finish())
        self._commit(self.clips.ready(final=True))

    def _drain(self) -> None:
        if self.sync is not None:
            self.sync.drain(self.flush_timeout_s)

    def _close_sync(self) -> None:
        if self.sync is not None:
            self.sync.stop()

    def _close_store(self) -> None:
        log.info(
            "listen stop reason=%r detections=%d windows=%d batches=%d outbox=%d",
            self.stop_reason,
            self.detections,
            self.pipeline.windows_classified,
            self.pipeline.batches,
            self.store.queue_depth(),
        )
        self.store.close()

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    # ------------------------------------------------------------------------------- steps

    def _commit(self, ready: list[tuple[Event, WrittenClip | None]]) -> None:
        if not ready:
            return
        detections, clips = [], []
        for event, clip in ready:
            det = event_to_detection(event, self.bank, self.context, clip.clip_id if clip else None)
            detections.append(det)
            if clip is not None:
                clips.append(ClipRecord(clip.clip_id, det.id, clip.path, clip.bytes))
        self.store.add(detections, clips)  # committed (fsync'd) before anything is published
        self.detections += len(detections)
        for det in detections:
            log.info(
                "detection id=%s species=%s score=%.3f similarity=%.3f start=%s windows=%d clip=%s",
                det.id,
                det.species_id,
                det.score,
                det.similarity,
                det.start_utc.isoformat(),
                det.windows,
                det.clip_id,
            )
        if self.sync is not None:
            self.sync.wake()

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.store.path.parent).free
        if free < self.min_free_bytes:
            log.error(
                "only %d MiB free on %s (floor %d MiB): stopping cleanly before the disk is full",
                free >> 20,
                self.store.path.parent,
                self.min_free_bytes >> 20,
            )
            self.request_stop("disk nearly full")

    def _heartbeat(self, running: bool = True) -> None:
        """Written to the store so `biovita-field status` can tell whether a daemon is alive."""
        doc = {
            "running": running,
            "pid": os.getpid(),
            "utc": datetime.now(timezone.utc).isoformat(),
            "uptime_s": self.status.uptime_s(),
            "bundle_id": self.context.bundle_id,
            "backend": self.context.backend,
            "source": self.source_kind,
            "windows": self.pipeline.windows_classified,
            "stream_samples": self.stream.samples,
            "source_reopens": self.stream.reopens,
            "mqtt_connected": bool(self.sync and self.sync.connected.is_set()),
            "acks_rejected": self.sync.acks_rejected if self.sync else 0,
            "clips_paused": self.clips.paused_reason,
            "stop_reason": self.stop_reason,
            "failure": self.failure,
        }
        self.store.set_meta("daemon", json.dumps(doc))
