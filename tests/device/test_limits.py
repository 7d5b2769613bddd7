"""Values that pass their field bounds but would silence the recorder or exhaust its memory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from biovita.bundle import load_bundle
from biovita.errors import ConfigError
from device.app import build_daemon
from device.config import load_config
from device.limits import check_against_bundle, memory_limit_bytes
from device.lock import DataDirLock
from tests.device.helpers import run_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"windows.hop_s": 10.0}, "would never be classified"),
        ({"windows.hop_s": 0.001}, "falls ever further behind"),
        ({"classify.temperature": 50.0}, "the recorder would never report anything"),
        ({"clips.max_clip_s": 1e9}, "ring of raw audio"),
    ],
)
def test_listen_refuses_values_that_silence_it_with_the_reason(
    tone_bundle, scape_file, tmp_path, overrides, reason
):
    cfg = run_config(tmp_path, tone_bundle, scape_file[0], **overrides)
    with pytest.raises(ConfigError, match=reason) as err:
        build_daemon(cfg)
    key = next(iter(overrides))
    assert key in str(err.value) and err.value.hint  # names the key and the fix
    DataDirLock(cfg.device.data_dir).acquire().release()  # nothing is left held


def _unit_memory_max() -> int:
    text = (REPO / "device" / "biovita-field.service").read_text()
    value = re.search(r"^MemoryMax=(\d+)M$", text, re.M).group(1)
    return int(value) << 20


def test_the_ring_buffer_must_fit_the_units_memory_limit(tone_bundle):
    bundle = load_bundle(tone_bundle)
    unit = _unit_memory_max()
    example = load_config(REPO / "device" / "device.example.toml", environ={})
    check_against_bundle(example, bundle, memory_limit=unit)  # the shipped values fit
    hour = example.model_copy(
        update={"clips": example.clips.model_copy(update={"max_clip_s": 3600})}
    )
    with pytest.raises(ConfigError, match="MemoryMax"):
        check_against_bundle(hour, bundle, memory_limit=unit)  # 1 h clips: 230 MiB of ring


def test_the_memory_limit_is_the_least_of_the_cgroup_chain_and_the_ram(tmp_path):
    unit = tmp_path / "cg" / "system.slice" / "biovita-field.service"
    unit.mkdir(parents=True)
    (unit / "memory.max").write_text("419430400\n")  # MemoryMax=400M
    (unit.parent / "memory.max").write_text("max\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/biovita-field.service\n")
    assert memory_limit_bytes(proc, tmp_path / "cg") == 419430400
    (unit.parent / "memory.max").write_text("104857600\n")  # a tighter slice above it
    assert memory_limit_bytes(proc, tmp_path / "cg") == 104857600
    ram = memory_limit_bytes(tmp_path / "missing", tmp_path / "cg")
    assert ram > 104857600  # no cgroup: the machine's RAM
