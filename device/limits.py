"""Config values that pass their own bounds but, with this bundle on this machine, would leave
the recorder silent, half deaf or out of memory: refused before the daemon starts, with the reason.

Checks that need only the config live in ``device.config``; these need the bundle (window, hop,
bank size, sample rate) or the machine (the cgroup memory limit systemd's ``MemoryMax`` sets).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from biovita.bundle import Bundle
from biovita.errors import ConfigError
from device.clips import ring_samples
from device.config import DeviceConfig

MAX_OVERLAP = 10  # windows covering each sample: more and inference cannot keep up on a Pi
RING_SHARE = 0.25  # of the memory limit: the tower, its batches and Python need the rest


def check_against_bundle(
    cfg: DeviceConfig, bundle: Bundle, memory_limit: int | None = None
) -> None:
    """Raise ``ConfigError`` with the reason; ``memory_limit`` None = this process's own."""
    _check_hop(cfg, bundle)
    _check_temperature(cfg, bundle)
    _check_ring(cfg, bundle, memory_limit_bytes() if memory_limit is None else memory_limit)


def _check_hop(cfg: DeviceConfig, bundle: Bundle) -> None:
    spec = bundle.manifest.frontend
    window_s = spec.window_samples / spec.sample_rate
    hop_s = cfg.windows.hop_s or spec.hop_s
    if hop_s > window_s:
        raise ConfigError(
            f"windows.hop_s = {hop_s:g} s is longer than the bundle's {window_s:g} s window: "
            f"{hop_s - window_s:g} s of every hop would never be classified",
            hint=f"use a hop of at most {window_s:g} s (unset: the bundle's {spec.hop_s:g} s)",
        )
    if hop_s < window_s / MAX_OVERLAP:
        raise ConfigError(
            f"windows.hop_s = {hop_s:g} s classifies every sample {window_s / hop_s:.0f} times "
            f"(window {window_s:g} s): inference falls ever further behind the sound card and "
            "the recorder reports late, then drops audio",
            hint=f"use a hop of at least {window_s / MAX_OVERLAP:g} s",
        )


def _check_temperature(cfg: DeviceConfig, bundle: Bundle) -> None:
    """A softmax so flat that even a perfect match cannot reach the lowest threshold."""
    defaults, c = bundle.manifest.scoring, cfg.classify
    temperature = c.temperature or defaults.temperature
    base = defaults.threshold if c.threshold is None else c.threshold
    threshold = min([base, *c.species_thresholds.values()])
    n = len(bundle.bank)
    if n < 2 or threshold >= 1:
        return
    # best case: cosine 1 to the species, -1 to every other one
    best = 1 / (1 + (n - 1) * math.exp(-2 / temperature))
    if best < threshold:
        limit = 2 / math.log((n - 1) * threshold / (1 - threshold))
        raise ConfigError(
            f"classify.temperature = {temperature:g} with {n} species: even a perfect match "
            f"scores {best:.3f}, below the threshold {threshold:g}; the recorder would never "
            "report anything",
            hint=f"use a temperature below {limit:.3g} (unset: the bundle's "
            f"{defaults.temperature:g})",
        )


def _check_ring(cfg: DeviceConfig, bundle: Bundle, limit: int) -> None:
    if not cfg.clips.enabled:
        return
    c, rate = cfg.clips, bundle.manifest.frontend.sample_rate
    ring = ring_samples(rate, c.pre_roll_s, c.post_roll_s, c.max_clip_s) * 4  # float32
    if ring > RING_SHARE * limit:
        raise ConfigError(
            f"clips.max_clip_s = {c.max_clip_s:g} s (with {c.pre_roll_s:g} + {c.post_roll_s:g} s "
            f"of roll) needs a {ring / (1 << 20):,.0f} MiB ring of raw audio; this process may "
            f"use {limit / (1 << 20):,.0f} MiB (the cgroup memory limit, systemd's MemoryMax, "
            f"or the RAM) and the ring must stay under {RING_SHARE:.0%} of it",
            hint="shorten clips.max_clip_s, or raise MemoryMax in biovita-field.service",
        )


def memory_limit_bytes(
    proc_cgroup: Path = Path("/proc/self/cgroup"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int:
    """The least of the RAM and every cgroup v2 ``memory.max`` from this process's up to the root."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return limit
    for line in lines:
        hierarchy, _, rel = line.partition("::")
        if hierarchy != "0":
            continue  # cgroup v1 controllers: not how systemd sets MemoryMax on current systems
        folder = cgroup_root / rel.strip().lstrip("/")
        while True:
            try:
                text = (folder / "memory.max").read_text().strip()
            except OSError:
                text = "max"
            if text.isdigit():
                limit = min(limit, int(text))
            if folder == cgroup_root or cgroup_root not in folder.parents:
                break
            folder = folder.parent
    return limit
