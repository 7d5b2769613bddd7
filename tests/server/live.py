"""The review app served by a real uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import threading

import uvicorn

from tests.support.mosquitto import free_port


class LiveServer:
    def __init__(self, app, options: dict | None = None) -> None:
        """``options``: uvicorn's, as ``server_sync.web.app.uvicorn_options`` makes them."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {**(options or {}), "host": "127.0.0.1", "port": self.port}
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        stop = threading.Event()
        for _ in range(200):
            if self.server.started:
                return self
            stop.wait(0.05)
        raise TimeoutError("uvicorn did not start in 10 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
