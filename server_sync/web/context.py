"""What every request handler needs, built once per process by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from server_sync.auth import SessionSigner
from server_sync.clips import ClipStore
from server_sync.config import WebSettings
from server_sync.species import SpeciesCatalogue
from server_sync.store import Store
from server_sync.throttle import LoginThrottle

MAX_BULK = 5000  # one bulk action reviews at most this many detections


@dataclass
class WebContext:
    store: Store
    clips: ClipStore
    catalogue: SpeciesCatalogue
    signer: SessionSigner
    settings: WebSettings
    cache_dir: Path
    logins: LoginThrottle = field(default_factory=LoginThrottle)


def get_context(request: Request) -> WebContext:
    return request.app.state.ctx
