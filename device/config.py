"""Typed device configuration with one source of truth: file, then environment, then flags.

Every key lives in a pydantic section below and is documented in ``device.example.toml``.
Environment variables are ``BIOVITA_<SECTION>__<KEY>`` (e.g. ``BIOVITA_MQTT__HOST``); their
values are read as TOML values when they parse as one (numbers, booleans, lists), else as text.
Flags arrive as dotted overrides (``{"mqtt.host": "broker"}``) from the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from biovita.detection import TopicName
from biovita.errors import ConfigError
from biovita.settings import load_layered, parse_value

ENV_PREFIX = "BIOVITA_"
MAX_WATCHDOG_S = 600.0  # a dead card must not go unnoticed for most of a dawn chorus


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceSection(_Section):
    id: TopicName = "recorder-01"
    site: TopicName = "site-01"
    data_dir: Path = Path(".")


class AudioSection(_Section):
    source: Literal["soundcard", "file", "stdin"] = "soundcard"
    input_device: str | None = None  # name (substring) or index; None = system default
    capture_rate_hz: int | None = Field(None, gt=0)  # None = the device's default rate
    channel: int | None = Field(None, ge=0)  # None = down-mix all channels
    channels: int = Field(1, ge=1)  # channels to open on the sound card / in stdin PCM
    block_s: float = Field(0.5, gt=0, le=10)
    path: Path | None = None  # file or folder for source = "file"
    realtime: bool = True  # file source: pace blocks at the speed of sound
    speed: float = Field(1.0, gt=0)  # file source with realtime: play this many times faster
    stdin_rate_hz: int = Field(16_000, gt=0)
    stdin_format: Literal["float32", "int16"] = "int16"
    min_rate_hz: int | None = Field(None, gt=0)  # below: refuse (None = 2 x front-end f_max)
    time_expansion: int = Field(1, ge=1)  # recordings played N times slower (bats); times real


class WindowsSection(_Section):
    hop_s: float | None = Field(None, gt=0)  # None = the bundle front-end's hop
    watchdog_s: float = Field(10.0, gt=0)  # no audio for this long: reopen the source

    @model_validator(mode="after")
    def _check(self) -> WindowsSection:
        if self.watchdog_s > MAX_WATCHDOG_S:
            raise ValueError(
                f"watchdog_s = {self.watchdog_s:g} s would leave a stalled or unplugged sound card "
                f"unnoticed (the recorder deaf) for that long; use at most {MAX_WATCHDOG_S:g} s"
            )
        return self


class InferenceSection(_Section):
    backend: Literal["auto", "onnxruntime", "tensorrt"] = "auto"
    providers: list[str] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    intra_op_threads: int = Field(0, ge=0)  # 0 = ONNX Runtime's default (all cores)
    precision: Literal["fp32", "fp16", "int8"] | None = None  # None = the bundle's primary tower
    allow_spinning: bool = False  # ONNX Runtime threads busy-wait between ops (burns energy)
    max_batch: int = Field(8, ge=1)  # bounds RAM: batch 32 of the student needs ~70 MiB more


class ClassifySection(_Section):
    temperature: float | None = Field(None, gt=0)  # None = the bundle's scoring defaults
    threshold: float | None = Field(None, ge=0, le=1)
    species_thresholds: dict[str, float] = Field(default_factory=dict)
    unknown_similarity: float | None = Field(None, ge=-1, le=1)
    min_similarity: float | None = Field(None, ge=-1, le=1)  # unknown band floor
    report_unknown: bool = True
    top_k: int | None = Field(None, ge=1)
    allow: list[str] = Field(default_factory=list)  # non-empty: only these species
    deny: list[str] = Field(default_factory=list)
    confirm_hits: int | None = Field(None, ge=1)  # N hits ... (None: the bundle's)
    confirm_windows: int | None = Field(None, ge=1)  # ... within M windows (None: the bundle's)
    merge_gap_windows: int = Field(1, ge=0)  # hit-free windows allowed inside one event
    max_event_s: float = Field(60.0, gt=0)
    silence_dbfs: float = Field(-80.0, le=0)  # windows quieter than this are not classified

    @model_validator(mode="after")
    def _check(self) -> ClassifySection:
        if self.confirm_hits and self.confirm_hits > (self.confirm_windows or self.confirm_hits):
            raise ValueError("confirm_hits must not exceed confirm_windows")
        bad = {s: t for s, t in self.species_thresholds.items() if not 0 <= t <= 1}
        if bad:
            raise ValueError(f"species thresholds must be in [0, 1]: {bad}")
        return self


class ClipsSection(_Section):
    enabled: bool = True
    dir: Path = Path("clips")
    pre_roll_s: float = Field(1.0, ge=0)
    post_roll_s: float = Field(1.0, ge=0)
    max_clip_s: float = Field(30.0, gt=0)
    quota_mb: float = Field(500.0, gt=0)
    min_free_mb: float = Field(200.0, ge=0)  # stop writing clips below this much free disk


class StoreSection(_Section):
    path: Path = Path("biovita-field.db")
    busy_timeout_ms: int = Field(5000, ge=0)
    min_free_mb: float = Field(20.0, ge=0)  # stop the daemon cleanly below this much free disk


class MqttSection(_Section):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(1883, gt=0, lt=65536)
    client_id: str | None = None  # None = "biovita-<site>-<device>"
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    keepalive_s: int = Field(30, ge=5)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    batch_size: int = Field(100, ge=1, le=1000)
    ack_timeout_s: float = Field(30.0, gt=0)
    # At a stop: wait this long for the outbox to drain, a connection still being made included
    # (systemd's TimeoutStopSec=30 must cover it plus the offline status and the SQLite close).
    flush_timeout_s: float = Field(5.0, ge=0, le=20)
    # One batch awaiting its ack at a time (stop-and-wait) keeps the server's first-store order
    # equal to the device's commit order even when the broker drops a message (Mosquitto forgets
    # shared subscriptions on restart): the lost batch is re-sent before anything newer. At 100
    # detections a batch that is still thousands of detections a second, far above any recorder.
    max_inflight_batches: int = Field(1, ge=1)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    status_interval_s: float = Field(60.0, gt=0)
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ConfigError(
                    f"cannot read mqtt.password_file {self.password_file}: {err}",
                    hint="check the path and that the service user may read it",
                ) from err
        return self.password


class LogSection(_Section):
    json_logs: bool = False
    verbose: int = Field(0, ge=0)


class DeviceConfig(_Section):
    device: DeviceSection = Field(default_factory=DeviceSection)
    bundle: Path | None = None
    audio: AudioSection = Field(default_factory=AudioSection)
    windows: WindowsSection = Field(default_factory=WindowsSection)
    inference: InferenceSection = Field(default_factory=InferenceSection)
    classify: ClassifySection = Field(default_factory=ClassifySection)
    clips: ClipsSection = Field(default_factory=ClipsSection)
    store: StoreSection = Field(default_factory=StoreSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    log: LogSection = Field(default_factory=LogSection)

    def data_path(self, path: Path) -> Path:
        """``path`` as given if absolute, else below ``device.data_dir``."""
        return path if path.is_absolute() else self.device.data_dir / path

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.windows.watchdog_s < 2 * self.audio.block_s:
            raise ValueError(
                f"windows.watchdog_s ({self.windows.watchdog_s:g} s) must be at least twice "
                f"audio.block_s ({self.audio.block_s:g} s): a sound card delivers one block every "
                "block_s, so a shorter watchdog re-opens the source between two blocks and the "
                "recorder never hears anything"
            )
        return self

    @property
    def store_path(self) -> Path:
        return self.data_path(self.store.path)

    @property
    def clips_dir(self) -> Path:
        return self.data_path(self.clips.dir)


def default_of(section: type[BaseModel], key: str) -> Any:
    """A key's default, for a library-level signature that must not write it a second time."""
    return section.model_fields[key].get_default(call_default_factory=True)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``BIOVITA_MQTT__HOST=broker`` -> ``{"mqtt.host": "broker"}`` (BIOVITA_LOG_LEVEL etc. skipped)."""
    out: dict[str, Any] = {}
    for name, text in environ.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            out[dotted] = parse_value(text)
        elif name == ENV_PREFIX + "BUNDLE":
            out["bundle"] = text
    return out


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DeviceConfig:
    """Read the TOML file (if any), apply environment variables, then flags; validate once."""
    return load_layered(
        DeviceConfig,
        path,
        env_overrides(os.environ if environ is None else environ),
        overrides or {},
        hint="see device/device.example.toml for every key, its type and its default",
    )
