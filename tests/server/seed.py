"""A small review world for web tests: species, users, detections with real FLAC clips."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from biovita.detection import Detection, utc_now
from biovita.manifest import write_taxa
from biovita.taxonomy import Taxon
from server_sync.auth import hash_password
from server_sync.clips import ClipStore
from server_sync.records import Clip, IngestUnit, Role, User
from server_sync.species import SpeciesCatalogue
from tests.server.factories import SPECIES, detection, status

PASSWORDS = {"ann": "ann-password-1", "root": "root-password-1"}


@dataclass
class Seeded:
    detections: list[Detection]
    catalogue: SpeciesCatalogue
    clips: ClipStore


def flac_bytes(seconds: float = 2.0, freq: float = 2000.0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    chirp = 0.3 * np.sin(2 * np.pi * (freq + 800 * t) * t) * np.exp(-((t - seconds / 2) ** 2) * 8)
    audio = (chirp + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16000, format="FLAC")
    return buffer.getvalue()


def silent_flac(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    """Silence compresses to almost nothing: 30 minutes is about 89 KB of FLAC."""
    buffer = io.BytesIO()
    soundfile.write(
        buffer, np.zeros((int(rate * seconds), channels), np.float32), rate, format="FLAC"
    )
    return buffer.getvalue()


def seed(store, root: Path, n: int = 30) -> Seeded:
    taxa = [
        Taxon(species_id=s, scientific_name=f"{s.title()} example", common_name=f"{s[3:]} bird")
        for s in SPECIES
    ] + [Taxon(species_id="sp_nightjar", scientific_name="Caprimulgus europaeus")]
    write_taxa(root / "taxa.csv", taxa)
    catalogue = SpeciesCatalogue.load(root / "taxa.csv")
    clips = ClipStore(root / "clips")
    now = utc_now()
    rows, clip_rows = [], []
    for i in range(n):
        device = f"dev-{i % 3}"
        clip_id = f"clip-{i}"
        relative = clips.relative_path(clip_id, device, now)
        sha = clips.write(relative, flac_bytes(seed=i, freq=1000 + 100 * (i % 5)))
        clip_rows.append(Clip(clip_id, device, "site-a", relative, 1, sha, now))
        rows.append(detection(device_id=device, n=i, clip_id=clip_id))
    store.ingest(
        IngestUnit(
            detections=rows,
            clips=clip_rows,
            statuses=[(status(f"dev-{k}", queue_depth=k, bundle_id="b-1"), now) for k in range(3)],
        )
    )
    store.put_user(User("ann", hash_password(PASSWORDS["ann"]), Role.REVIEWER, now))
    store.put_user(User("root", hash_password(PASSWORDS["root"]), Role.ADMIN, now))
    return Seeded(rows, catalogue, clips)
