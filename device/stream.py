"""A source read on its own thread, watched: a stalled or failed source is closed and re-opened.

Capture runs on a producer thread so a slow inference step never blocks the sound card; blocks
wait in a bounded queue (the producer blocks when it is full, so a file source is paced by
inference and a sound card's own bounded queue drops the oldest audio instead of growing RAM).
The consumer re-bases every source's sample counter onto one stream counter and marks the first
block after a re-open as a discontinuity.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from biovita.errors import AudioError
from device.records import AudioBlock, AudioSource

log = logging.getLogger(__name__)

_END = object()


class WatchedStream:
    def __init__(
        self,
        open_source: Callable[[], AudioSource],
        watchdog_s: float,
        queue_blocks: int = 64,
        reopen_backoff_max_s: float = 30.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.open_source = open_source
        self.watchdog_s = watchdog_s
        self.queue_blocks = queue_blocks
        self.backoff_max = reopen_backoff_max_s
        self.stop_event = stop_event or threading.Event()
        self.reopens = 0
        self.samples = 0  # stream sample counter: samples delivered so far
        self.last_block_monotonic: float | None = None
        self._source: AudioSource | None = None
        self._queue: queue.Queue | None = None

    def backlog(self) -> int:
        """Blocks captured but not yet consumed: inference is behind when this grows."""
        return self._queue.qsize() if self._queue is not None else 0

    def _produce(self, source: AudioSource, out: queue.Queue, cancelled: threading.Event) -> None:
        # errors are handed to the consumer, which decides: re-open or give up
        _feed(source.blocks(), out, cancelled, forward=Exception)

    def _start(self) -> tuple[queue.Queue, threading.Event]:
        self._source = self.open_source()  # errors here (e.g. missing device) reach the caller
        out: queue.Queue = queue.Queue(maxsize=self.queue_blocks)
        self._queue = out
        cancelled = threading.Event()
        threading.Thread(
            target=self._produce,
            args=(self._source, out, cancelled),
            name=f"source-{self._source.name}",
            daemon=True,  # a read blocked in the kernel (stdin, a hung card) must not block exit
        ).start()
        return out, cancelled

    def _close(self, cancelled: threading.Event) -> None:
        cancelled.set()
        if self._source is not None:
            try:
                self._source.close()
            except Exception as err:  # a dead card may fail to close; re-opening still helps
                log.warning("closing source %s failed: %s", self._source.name, err)

    def blocks(self) -> Iterator[AudioBlock]:
        out, cancelled = self._start()
        base, discontinuity, backoff = self.samples, False, 1.0
        self.last_block_monotonic = time.monotonic()  # opening counts as activity
        try:
            while not self.stop_event.is_set():
                try:
                    item = out.get(timeout=min(self.watchdog_s, 0.25))
                except queue.Empty:
                    idle = time.monotonic() - self.last_block_monotonic
                    if idle < self.watchdog_s:
                        continue
                    log.warning(
                        "source %s stalled: no audio for %.1f s; re-opening it",
                        self._source.name,
                        idle,
                    )
                    item = None
                if item is _END:
                    return
                if isinstance(item, AudioBlock):
                    block = replace(
                        item, start_sample=base + item.start_sample, discontinuity=discontinuity
                    )
                    discontinuity, backoff = False, 1.0
                    self.samples = block.end_sample
                    self.last_block_monotonic = time.monotonic()
                    yield block
                    continue
                if isinstance(item, Exception):
                    log.error("source %s failed: %s; re-opening it", self._source.name, _text(item))
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                self._close(cancelled)
                self.reopens += 1
                reopened = self._reopen()
                if reopened is None:
                    return
                out, cancelled = reopened
                base, discontinuity = self.samples, True
                self.last_block_monotonic = time.monotonic()
        finally:
            self._close(cancelled)

    def _reopen(self) -> tuple[queue.Queue, threading.Event] | None:
        """Open the source again, retrying with capped backoff; None once a stop is requested."""
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                return self._start()
            except AudioError as err:
                log.error("cannot re-open the source: %s", err.describe())
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max)
        return None


def _text(err: Exception) -> str:
    return err.describe() if isinstance(err, AudioError) else f"{type(err).__name__}: {err}"


def _feed(
    items: Iterator,
    out: queue.Queue,
    cancelled: threading.Event,
    forward: type[BaseException],
) -> None:
    """Put ``items`` on ``out`` until done (then ``_END``) or cancelled; a raised ``forward``
    error is put on the queue for the consumer instead of dying with this thread."""
    try:
        for item in items:
            while not cancelled.is_set():
                try:
                    out.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if cancelled.is_set():
                return
        out.put(_END)
    except forward as err:
        out.put(err)


def prefetched(items: Iterator[AudioBlock], depth: int = 2) -> Iterator[AudioBlock]:
    """Run ``items`` (decode + resample) on a thread, ``depth`` blocks ahead of the consumer.

    libsndfile, libsoxr and ONNX Runtime release the GIL, so offline classification decodes the
    next block while the tower runs on the current one. Errors reach the consumer in order.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    cancelled = threading.Event()

    threading.Thread(
        target=_feed,
        args=(items, out, cancelled),
        kwargs={"forward": BaseException},  # re-raised in the consumer's thread
        name="prefetch",
        daemon=True,
    ).start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
