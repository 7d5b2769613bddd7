"""Live times follow the sample clock: monotonic, exact, never in the future (issue 14 item 7)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import numpy as np
import soundfile

from device.sources import FileSource, StdinSource
from device.store import Store
from tests.device.helpers import DaemonThread, run_config


def _assert_sample_clock(blocks, rate: int) -> None:
    first = blocks[0].wall_time
    for block in blocks:
        assert block.wall_time == first + timedelta(seconds=block.start_sample / rate)


def test_stdin_faster_than_real_time_is_stamped_by_the_sample_clock(real_audio_files):
    path = real_audio_files[0]
    native, rate = soundfile.read(path, dtype="int16", always_2d=True)
    pipe = io.BytesIO(native.tobytes())  # the whole recording at once: far faster than real time
    before = datetime.now(timezone.utc)
    blocks = list(StdinSource(rate, 16_000, native.shape[1], "int16", None, 0.25, pipe).blocks())
    _assert_sample_clock(blocks, 16_000)
    assert before - timedelta(seconds=1) <= blocks[0].wall_time <= datetime.now(timezone.utc)


def test_a_folder_played_fast_ends_now_and_stays_in_order(real_audio_dir):
    before = datetime.now(timezone.utc)
    source = FileSource(real_audio_dir, 16_000, realtime=False, block_s=2.0)
    blocks = list(source.blocks())
    _assert_sample_clock(blocks, 16_000)
    last = blocks[-1]
    end = last.wall_time + timedelta(seconds=len(last.samples) / 16_000)
    assert end <= before + timedelta(seconds=0.01)  # recorded before playback started


def test_listen_file_fast_never_dates_a_detection_in_the_future(tone_bundle, scape_file, tmp_path):
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path)
    DaemonThread(cfg).start().join()
    finished = datetime.now(timezone.utc)
    store = Store(cfg.store_path)
    rows = [d for d in store.detections([r["id"] for r in store.recent(100)])]
    store.close()
    assert len(rows) == 4
    rows.sort(key=lambda d: d.start_sample)
    starts = [d.start_utc for d in rows]
    assert starts == sorted(starts) and all(d.end_utc <= finished for d in rows)
    assert not any(d.clock_synced for d in rows)  # playback time, not recording time
    spacing = (rows[-1].start_utc - rows[0].start_utc).total_seconds()
    assert np.isclose(spacing, (rows[-1].start_sample - rows[0].start_sample) / 16_000)
