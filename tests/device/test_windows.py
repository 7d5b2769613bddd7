from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from biovita.audio import window_starts
from device.records import AudioBlock
from device.windows import Windower

T0 = datetime(2026, 5, 1, 4, 30, tzinfo=timezone.utc)


def _blocks(n: int, sizes: list[int], rate: int = 100, origin: str = "a"):
    ramp = np.arange(n, dtype=np.float32)
    pos = 0
    for size in sizes:
        chunk = ramp[pos : pos + size]
        if not len(chunk):
            break
        yield AudioBlock(chunk, rate, pos, T0 + timedelta(seconds=pos / rate), origin)
        pos += size


@pytest.mark.parametrize("n", [1, 299, 300, 301, 450, 1000, 1234])
@pytest.mark.parametrize("block", [7, 150, 5000])
def test_windows_match_the_shared_window_starts_for_any_block_size(n, block):
    w = Windower(window=300, hop=150, sample_rate=100)
    windows = [x for b in _blocks(n, [block] * (n // block + 1)) for x in w.push(b)] + w.flush()
    assert [x.start_sample for x in windows] == window_starts(n, 300, 150)
    for x in windows:
        expected = np.arange(x.start_sample, min(x.start_sample + 300, n), dtype=np.float32)
        assert np.array_equal(x.samples[: len(expected)], expected)  # real samples, in order
        assert x.padding == 300 - len(expected) and x.audio_end_sample == x.start_sample + len(
            expected
        )
        assert np.array_equal(x.samples, np.resize(expected, 300))  # padding repeats the audio
        assert x.wall_time == T0 + timedelta(seconds=x.start_sample / 100)
    assert [x.index for x in windows] == list(range(len(windows)))


def test_a_discontinuity_flushes_and_restarts_the_windows():
    w = Windower(window=300, hop=150, sample_rate=100)
    first = w.push(AudioBlock(np.ones(400, np.float32), 100, 0, T0, "a.wav"))
    later = T0 + timedelta(hours=1)
    second = w.push(AudioBlock(np.ones(300, np.float32), 100, 400, later, "b.wav"))
    assert [x.start_sample for x in first] == [0]
    assert [(x.start_sample, x.origin) for x in second] == [(150, "a.wav"), (400, "b.wav")]
    assert second[1].discontinuity and second[1].wall_time == later
    assert not second[0].discontinuity
