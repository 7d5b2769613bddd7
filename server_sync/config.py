"""Typed settings with one order of precedence: TOML file, then environment, then flags.

Everything has a default that works on one machine: a data folder holding the SQLite database,
the clips and the session secret; a broker on localhost.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from biovita.settings import load_layered

ENVIRONMENT = {
    "BIOVITA_SERVER_DATA": ("data_dir",),
    "BIOVITA_SERVER_DB": ("db",),
    "BIOVITA_SERVER_SPECIES": ("web", "species"),
    "BIOVITA_MQTT_HOST": ("mqtt", "host"),
    "BIOVITA_MQTT_PORT": ("mqtt", "port"),
    "BIOVITA_MQTT_USERNAME": ("mqtt", "username"),
    "BIOVITA_MQTT_PASSWORD": ("mqtt", "password"),
    "BIOVITA_MQTT_TLS_CA": ("mqtt", "tls_ca"),
}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = Field(None, repr=False)
    tls_ca: Path | None = Field(None, description="CA file: turns TLS on")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_id: str = Field(default_factory=lambda: f"biovita-ingest-{socket.gethostname()}")
    share_group: str = Field("ingest", description="workers in one group split the messages")
    keepalive_s: int = Field(30, gt=0)
    # The broker queues this worker's share while it is away, for this long. Long enough for a
    # restart; not days: a worker removed for good would keep receiving (and sitting on) its
    # share of the group's messages until expiry. Devices re-send whatever is not acked, so an
    # expired queue delays rows, it does not lose them.
    session_expiry_s: int = Field(600, ge=0, description="broker keeps our queue this long")
    receive_maximum: int = Field(
        1000, gt=0, le=65535, description="unacked messages in flight to this worker"
    )


class IngestSettings(_Settings):
    flush_ms: float = Field(20.0, gt=0, description="collect messages this long, then commit")
    max_messages: int = Field(1000, gt=0, description="or this many, whichever comes first")
    stop_timeout_s: float = Field(
        10.0, ge=0, description="on a stop, wait this long for the last commit's acks to go out"
    )


class LimitSettings(_Settings):
    """Bounds that keep one device (or one hostile message) from costing the server much."""

    max_clip_seconds: float = Field(
        120.0, gt=0, description="decoded clip length; the device cuts clips at 30 s"
    )
    max_clip_rate_hz: int = Field(96_000, gt=0, description="clip sample rate")
    max_clip_channels: int = Field(2, gt=0, description="clip channels (the device records one)")
    clip_bytes_per_device_day: int = Field(
        1 << 30, gt=0, description="clip bytes stored per device per UTC day; beyond, not acked"
    )
    dead_letters_per_device_reason: int = Field(
        100,
        gt=0,
        description="distinct dead letters kept (with payload) per device and reason; beyond, "
        "only counted",
    )
    messages_per_device_minute: int = Field(
        1200, gt=0, description="messages taken per device per minute (a minute's burst)"
    )


class WebSettings(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(8080, gt=0, lt=65536)
    species: Path | None = Field(None, description="species.npz bank or taxa.csv")
    secure_cookies: bool = Field(False, description="set when served over HTTPS")
    session_hours: float = Field(12.0, gt=0)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For is believed; with none, "
        "the client is the TCP peer (the login throttle counts by it)",
    )


class ServerSettings(_Settings):
    data_dir: Path = Path("server-data")
    db: str | None = Field(None, description="default: sqlite://DATA_DIR/server.db")
    clips_dir: Path | None = Field(None, description="default: DATA_DIR/clips")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite://{self.data_dir / 'server.db'}"

    @property
    def clips_root(self) -> Path:
        return self.clips_dir or self.data_dir / "clips"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret.key"


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> ServerSettings:
    """File, then environment, then ``overrides`` (dotted keys, e.g. ``"mqtt.port"``)."""
    environ = os.environ if environ is None else environ
    from_env = {
        ".".join(key): environ[name] for name, key in ENVIRONMENT.items() if environ.get(name)
    }
    return load_layered(
        ServerSettings,
        config_file,
        from_env,
        overrides or {},
        hint="see server_sync/config.py for every setting and its type",
    )
