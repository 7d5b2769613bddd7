import numpy as np
import pytest

from biovita.errors import ManifestError
from biovita.manifest import read_manifest
from trainer.data import EpochSampler, load_species_data
from trainer.shards import iter_shards, load_shard_data, write_shards


def test_manifest_loads_species_in_taxa_order(tiny_world):
    data = load_species_data(tiny_world / "manifest.csv")
    taxa_ids = [
        line.split(",")[0] for line in (tiny_world / "taxa.csv").read_text().splitlines()[1:]
    ]
    assert data.species_ids == taxa_ids
    rows = [r for r in read_manifest(tiny_world / "manifest.csv") if r.split == "train"]
    assert len(data.clips) == len(rows)
    assert all(
        data.species_ids[c.species] == r.species_id for c, r in zip(data.clips, rows, strict=True)
    )
    window = data.window(0)
    assert window.shape == (data.frontend.window_samples,) and window.dtype == np.float32
    assert any(data.images_of) and data.image(0).mode == "RGB"


def test_unknown_species_is_a_clear_error(tiny_world, tmp_path):
    text = (tiny_world / "manifest.csv").read_text().replace(",train,", ",train,", 1)
    lines = text.splitlines()
    first = lines[1].split(",")
    first[1] = "no_such_species"
    (tmp_path / "manifest.csv").write_text("\n".join([lines[0], ",".join(first)]) + "\n")
    with pytest.raises(ManifestError, match="no_such_species"):
        load_species_data(tmp_path / "manifest.csv", taxa_path=tiny_world / "taxa.csv")


def test_sampler_caps_clips_per_species_and_is_deterministic(tiny_world):
    data = load_species_data(tiny_world / "manifest.csv")
    sampler = EpochSampler(data, batch_size=5, per_species=2, seed=3)
    epoch = sampler._epoch_order(0)
    species = [data.clips[i].species for i in epoch]
    assert max(np.bincount(species)) == 2
    assert len(epoch) == 2 * len({c.species for c in data.clips})
    again = EpochSampler(data, batch_size=5, per_species=2, seed=3)
    a, b = sampler.next_batch(), again.next_batch()
    assert a.prompts == b.prompts and np.array_equal(a.pcm.numpy(), b.pcm.numpy())


def test_sampler_resumes_mid_epoch_and_ranks_are_disjoint(tiny_world):
    data = load_species_data(tiny_world / "manifest.csv")
    straight = EpochSampler(data, batch_size=3, per_species=4, seed=1)
    batches = [straight.next_batch() for _ in range(5)]
    resumed = EpochSampler(data, batch_size=3, per_species=4, seed=1)
    for _ in range(2):
        resumed.next_batch()
    state = resumed.state_dict()
    fresh = EpochSampler(data, batch_size=3, per_species=4, seed=1)
    fresh.load_state_dict(state)
    for expected in batches[2:]:
        got = fresh.next_batch()
        assert got.prompts == expected.prompts
        assert np.array_equal(got.pcm.numpy(), expected.pcm.numpy())

    r0 = EpochSampler(data, 2, 4, seed=1, rank=0, world_size=2)._epoch_order(0)
    r1 = EpochSampler(data, 2, 4, seed=1, rank=1, world_size=2)._epoch_order(0)
    assert len(r0) == len(r1) and not set(r0) & set(r1)


def test_image_sampler_covers_images(tiny_world):
    data = load_species_data(tiny_world / "manifest.csv")
    sampler = EpochSampler(data, batch_size=4, per_species=100, unit="images")
    batch = sampler.next_batch()
    assert batch.pcm is None and (batch.images >= 0).all()
    for image, species in zip(batch.images.tolist(), batch.species.tolist(), strict=True):
        assert image in data.images_of[species]


def test_shards_round_trip(tiny_world, tmp_path):
    rows = [r for r in read_manifest(tiny_world / "manifest.csv") if r.split == "train"]
    paths = write_shards(rows, tmp_path / "shards", per_shard=10)
    assert len(paths) == -(-len(rows) // 10)
    samples = list(iter_shards(paths))
    assert [s.meta["species_id"] for s in samples] == [r.species_id for r in rows]
    direct = load_species_data(tiny_world / "manifest.csv")
    from_shards = load_shard_data(paths, tiny_world / "taxa.csv")
    assert len(from_shards.clips) == len(direct.clips)
    # 16-bit FLAC: within one quantisation step of the decoded original
    assert np.abs(from_shards.pcm(0) - direct.pcm(0)).max() <= 1.0 / 32768 + 1e-7
    assert from_shards.image(0).size == direct.image(0).size
    # Writing twice gives identical bytes (no timestamps inside).
    again = write_shards(rows, tmp_path / "again", per_shard=10)
    assert paths[0].read_bytes() == again[0].read_bytes()


def test_damaged_shard_is_a_clear_error(tmp_path):
    bad = tmp_path / "shard-000000.tar"
    bad.write_bytes(b"not a tar file at all")
    with pytest.raises(ManifestError, match="cannot read shard"):
        list(iter_shards([bad]))


def test_training_windows_fall_at_random_offsets(tiny_world):
    """A one-window clip is rotated by a random number of samples; evaluation sees it as is."""
    data = load_species_data(tiny_world / "manifest.csv")
    clip = data.pcm(0)
    assert len(clip) == data.frontend.window_samples
    assert np.array_equal(data.window(0), clip)
    offsets = set()
    for seed in range(4):
        window = data.window(0, np.random.default_rng(seed))
        # the rotation that lines the window up with the clip: the peak of their circular
        # cross-correlation, then checked sample for sample
        offset = int(np.argmax(np.fft.irfft(np.fft.rfft(window) * np.conj(np.fft.rfft(clip)))))
        assert np.array_equal(np.roll(clip, offset), window)
        offsets.add(offset)
    assert len(offsets) == 4
