"""The composition root: builds the pipeline's parts from a config and a bundle.

Everything that decides *which* adapter to use lives here, so the modules themselves stay small
and only know their Protocol neighbours.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from biovita.bundle import Bundle, load_bundle
from biovita.errors import ConfigError
from device.backends import make_backend
from device.classify import EventTracker, Scorer, ScoringPolicy
from device.clips import ClipRecorder
from device.config import DeviceConfig
from device.daemon import Daemon, StatusReport, clock_is_synced
from device.limits import check_against_bundle
from device.lock import DataDirLock
from device.pipeline import DetectionContext, Pipeline
from device.records import AudioSource, Backend
from device.sources import FileSource, SoundcardSource, StdinSource
from device.store import Store
from device.stream import WatchedStream
from device.sync import MqttSync
from device.windows import Windower

MIB = 1 << 20


def open_bundle(cfg: DeviceConfig) -> Bundle:
    if cfg.bundle is None:
        raise ConfigError(
            "no bundle given", hint="pass --bundle PATH or set bundle = ... in the config file"
        )
    return load_bundle(cfg.bundle)


def build_backend(bundle: Bundle, cfg: DeviceConfig) -> Backend:
    return make_backend(bundle, cfg.inference)


def min_rate(bundle: Bundle, cfg: DeviceConfig) -> int:
    """Refuse audio sampled below twice the highest frequency the front-end listens to."""
    return cfg.audio.min_rate_hz or int(2 * bundle.manifest.frontend.f_max)


def build_pipeline(bundle: Bundle, cfg: DeviceConfig, backend: Backend) -> Pipeline:
    """A fresh pipeline (its own windows and event state) sharing the loaded backend."""
    spec = bundle.manifest.frontend
    hop_s = cfg.windows.hop_s or spec.hop_s
    hop = int(round(hop_s * spec.sample_rate))
    clock_rate = spec.sample_rate * cfg.audio.time_expansion  # stream samples per real second
    policy = ScoringPolicy.from_config(bundle.manifest.scoring, cfg.classify)
    c, defaults = cfg.classify, bundle.manifest.scoring
    tracker = EventTracker(  # the tracker refuses an N above M however the two were mixed
        confirm_hits=c.confirm_hits or defaults.confirm_hits,
        confirm_windows=c.confirm_windows or defaults.confirm_windows,
        merge_gap=c.merge_gap_windows,
        max_event_samples=max(1, int(round(c.max_event_s * clock_rate))),
    )
    return Pipeline(
        backend,
        Scorer(bundle.bank, policy),
        tracker,
        Windower(spec.window_samples, hop, clock_rate),
        max_batch=cfg.inference.max_batch,
        silence_dbfs=c.silence_dbfs,
    )


def detection_context(bundle: Bundle, cfg: DeviceConfig, backend: Backend) -> DetectionContext:
    return DetectionContext(
        device_id=cfg.device.id,
        site_id=cfg.device.site,
        bundle_id=bundle.manifest.bundle_id,
        backend=backend.name,
    )


def build_source(bundle: Bundle, cfg: DeviceConfig) -> AudioSource:
    a, rate = cfg.audio, bundle.manifest.frontend.sample_rate
    if a.source == "file":
        if a.path is None:
            raise ConfigError(
                "audio.source is 'file' but audio.path is not set", hint="--file PATH"
            )
        return FileSource(
            Path(a.path),
            rate,
            a.realtime,
            a.block_s,
            a.channel,
            min_rate(bundle, cfg),
            speed=a.speed,
            time_expansion=a.time_expansion,
        )
    if a.time_expansion > 1:
        raise ConfigError(
            f"audio.time_expansion applies to recordings, not to a live {a.source}",
            hint="classify the recordings (or listen --file them) with the time expansion",
        )
    if a.source == "stdin":
        return StdinSource(
            a.stdin_rate_hz,
            rate,
            a.channels,
            a.stdin_format,
            a.channel,
            a.block_s,
            min_rate=min_rate(bundle, cfg),
        )
    return SoundcardSource(
        rate,
        a.input_device,
        a.capture_rate_hz,
        a.channels,
        a.channel,
        a.block_s,
        min_rate(bundle, cfg),
    )


def build_clips(bundle: Bundle, cfg: DeviceConfig, store: Store) -> ClipRecorder:
    c = cfg.clips
    return ClipRecorder(
        cfg.clips_dir,
        bundle.manifest.frontend.sample_rate,
        store,
        pre_roll_s=c.pre_roll_s,
        post_roll_s=c.post_roll_s,
        max_clip_s=c.max_clip_s,
        quota_bytes=int(c.quota_mb * MIB),
        min_free_bytes=int(c.min_free_mb * MIB),
        enabled=c.enabled,
    )


def build_daemon(cfg: DeviceConfig) -> Daemon:
    """Everything ``listen`` runs, wired from one config: the only reader of it for the daemon.

    The bundle and the values checked against it are read first (a refusal writes nothing),
    then the data folder is locked before anything in it is opened: a second daemon is refused
    before it touches the store. Whatever was built is closed again, in reverse order, if a
    later part fails.
    """
    bundle = open_bundle(cfg)
    check_against_bundle(cfg, bundle)
    with ExitStack() as undo:
        lock = undo.enter_context(DataDirLock(cfg.device.data_dir))
        backend = build_backend(bundle, cfg)
        context = replace(
            detection_context(bundle, cfg, backend),
            # a file played as a stream is dated by playback, not by when it was recorded
            clock_synced=cfg.audio.source != "file" and clock_is_synced(),
        )
        store = Store(cfg.store_path, cfg.store.busy_timeout_ms)
        undo.callback(store.close)
        status = StatusReport(store, context)
        sync = (
            MqttSync(store, cfg.mqtt, cfg.device.id, cfg.device.site, status)
            if cfg.mqtt.enabled
            else None
        )
        daemon = Daemon(
            context=context,
            bank=bundle.bank,
            pipeline=build_pipeline(bundle, cfg, backend),
            stream=WatchedStream(lambda: build_source(bundle, cfg), cfg.windows.watchdog_s),
            clips=build_clips(bundle, cfg, store),
            store=store,
            sync=sync,
            status=status,
            lock=lock,
            source_kind=cfg.audio.source,
            min_free_bytes=int(cfg.store.min_free_mb * MIB),
            flush_timeout_s=cfg.mqtt.flush_timeout_s,
        )
        undo.pop_all()  # the daemon owns them now and closes them in its shutdown
    return daemon
