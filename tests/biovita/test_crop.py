"""The onset crop of the official BioVITA evaluation (biovita.crop), on a signal whose onset is
known to the sample."""

import numpy as np

from biovita.crop import onset_crop


def test_onset_crop_starts_a_preroll_before_the_first_sound_as_the_official_evaluation():
    rate = 1000
    pcm = np.zeros(5 * rate, np.float32)
    pcm[2000:2100] = 1.0
    pcm[1500] = 0.005  # below 1% of the peak: not the onset
    crop = onset_crop(pcm, rate, samples=1000)
    assert crop.shape == (1000,)
    assert np.flatnonzero(crop > 0.5)[0] == 200  # 0.2 s preroll
    tail = onset_crop(pcm[:2050], rate, samples=1000)  # runs out: zero-padded
    assert tail.shape == (1000,) and not tail[250:].any()
    assert not onset_crop(np.zeros(10, np.float32), rate, 1000).any()
