"""Species-capped sampling with the official oversampling, and batches streamed from DataLoader
workers that decode on demand: the same stream as in-process, and no decoded audio kept."""

import itertools

import numpy as np
import pytest

from trainer.data import EpochSampler

from .tones import tone_data


def _counts(sampler: EpochSampler) -> np.ndarray:
    species = [sampler._species_of[int(i)] for i in sampler._epoch_order(0)]
    return np.bincount(species, minlength=len(sampler.items_of))


def test_rare_species_are_oversampled_and_abundant_ones_capped():
    data = tone_data(clips_per_species=(2, 7, 30), cache_audio=False)
    sampler = EpochSampler(data, batch_size=4)  # the paper's 5 and 20
    assert _counts(sampler).tolist() == [5, 7, 20]
    rare = [int(i) for i in sampler._epoch_order(0) if sampler._species_of[int(i)] == 0]
    assert set(rare) == set(data.clips_of()[0])  # both clips, then repeats
    both_keys = EpochSampler(data, batch_size=4, per_species=6, min_per_species=3)
    assert _counts(both_keys).tolist() == [3, 6, 6]


def _batches(sampler, workers, n):
    return list(itertools.islice(sampler.stream(workers), n))


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_stream_the_same_batches_in_order_and_resume(workers):
    in_process = tone_data(clips_per_species=(2, 3, 4))
    expected = _batches(EpochSampler(in_process, batch_size=4, seed=1), 0, 7)  # two epochs' worth
    data = tone_data(clips_per_species=(2, 3, 4), cache_audio=True)
    sampler = EpochSampler(data, batch_size=4, seed=1)
    stream = sampler.stream(workers)
    got = [next(stream) for _ in range(3)]
    state = sampler.state_dict()  # counts the consumed batches, not the workers' prefetch
    stream.close()
    resumed = EpochSampler(data, batch_size=4, seed=1)
    resumed.load_state_dict(state)
    got += _batches(resumed, workers, 4)
    for a, b in zip(got, expected, strict=True):
        assert a.prompts == b.prompts and a.clips.tolist() == b.clips.tolist()
        assert np.array_equal(a.pcm.numpy(), b.pcm.numpy())
    assert not data._pcm  # the training process decoded nothing: the workers did, and kept none


def test_without_the_cache_clips_are_decoded_on_demand():
    data = tone_data(cache_audio=False)
    _batches(EpochSampler(data, batch_size=4), 0, 3)
    assert not data._pcm
