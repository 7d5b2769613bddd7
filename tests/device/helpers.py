"""Small helpers the device tests share: configs for a run, running a daemon on a thread."""

from __future__ import annotations

import threading
from pathlib import Path

from device.app import build_daemon
from device.config import DeviceConfig, load_config


def run_config(tmp: Path, bundle: Path, audio: Path, **overrides) -> DeviceConfig:
    settings = {
        "bundle": str(bundle),
        "device.data_dir": str(tmp / "data"),
        "device.id": "rec-7",
        "device.site": "marsh",
        "audio.source": "file",
        "audio.path": str(audio),
        "audio.realtime": False,
        "mqtt.enabled": False,
        "mqtt.reconnect_min_s": 0.2,
        "mqtt.reconnect_max_s": 1.0,
        "mqtt.ack_timeout_s": 3.0,
        "mqtt.keepalive_s": 5,
    }
    settings.update(overrides)
    return load_config(None, environ={}, overrides=settings)


class DaemonThread:
    """A real Daemon (store, pipeline, sync) running its lifecycle on a background thread."""

    def __init__(self, cfg: DeviceConfig) -> None:
        self.daemon = build_daemon(cfg)
        self.error: BaseException | None = None
        self.returncode: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.returncode = self.daemon.run()
        except BaseException as err:  # surfaced by join()
            self.error = err

    def start(self) -> DaemonThread:
        self.thread.start()
        return self

    def join(self, timeout: float = 60.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "daemon did not stop in time"
        if self.error:
            raise self.error

    def stop(self) -> None:
        self.daemon.request_stop("test")
        self.join()
