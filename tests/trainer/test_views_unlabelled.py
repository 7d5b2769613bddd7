"""Per-tower views in distillation, and distillation on recordings without labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from biovita.audio import load_audio, resample
from biovita.errors import ConfigError
from trainer.checkpoint import load_student
from trainer.cli import main
from trainer.config import load_config
from trainer.data import load_species_data
from trainer.models.encoders import tiny_image_text
from trainer.models.vita import VitaModel
from trainer.stages import new_audio_teacher
from trainer.unlabelled import StreamedAudio, StreamSampler, find_recordings
from trainer.views import View, centred_window, pad_to

from .conftest import TINY_RECIPE

STUDENT = (  # a student of its own rate and window
    'distill.frontend={"kind": "biovita", "window_s": 2.0, "hop_s": 1.0}',
    "distill.sample_rate=22050",
)


def test_pad_to_repeats_like_clap_repeatpad_or_pads_zeros():
    clip = np.arange(1, 4, dtype=np.float32)
    assert pad_to(clip, 8, "repeatpad").tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    assert pad_to(clip, 5).tolist() == [1, 2, 3, 0, 0]
    assert pad_to(clip, 2, "repeatpad").tolist() == [1, 2]


def test_each_tower_hears_its_own_view_of_the_same_moment(tiny_world):
    data = load_species_data(tiny_world / "manifest.csv")  # the student's view: 16 kHz, 3 s
    teacher = View(48_000, 48_000 * 4, "repeatpad")  # a CLAP-like teacher: 48 kHz, 4 s, repeat
    window, heard = data.views(0, teacher)
    assert window.shape == (48_000,) and heard.shape == (192_000,)
    # The clip from its file, resampled once to 48 kHz, repeat-padded: what the teacher heard.
    native, rate = load_audio(data.clips[0].key)
    np.testing.assert_allclose(
        heard, pad_to(resample(native, rate, 48_000), 192_000, "repeatpad"), atol=1e-6
    )
    # Rotated for training: both views rotated by the same fraction of the clip.
    rng = np.random.default_rng(3)
    window, heard = data.views(0, teacher, rng)
    shift = int(np.random.default_rng(3).integers(0, 48_000))
    np.testing.assert_array_equal(window, np.roll(data.pcm(0), shift))
    rolled = np.roll(resample(native, rate, 48_000), round(shift / 48_000 * 144_000))
    np.testing.assert_allclose(heard, pad_to(rolled, 192_000, "repeatpad"), atol=1e-6)


def test_a_longer_recording_gives_windows_centred_on_one_instant(real_audio_files):
    recordings = find_recordings(real_audio_files)
    student, teacher = View(16_000, 32_000), View(48_000, 480_000, "repeatpad")
    audio = StreamedAudio(recordings, student, teacher)
    long = next(
        i for i, (r, c) in enumerate(audio.items) if recordings[r].duration_s >= 10 and c > 5
    )
    s, t = audio.views(long, None)
    r, centre = audio.items[long]
    native, rate = load_audio(recordings[r].path)
    np.testing.assert_allclose(
        s, centred_window(resample(native, rate, 16_000), student, centre), atol=2e-3
    )
    assert t.shape == (480_000,)


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory):
    cfg = load_config(None, TINY_RECIPE)
    torch.manual_seed(0)
    image_text = tiny_image_text(32, 32, width=32, layers=2)
    vita = VitaModel(image_text, new_audio_teacher(cfg, 32))
    return vita.save(tmp_path_factory.mktemp("teacher") / "teacher.pt")


def _distill_sets(extra=()):
    sets = [*TINY_RECIPE, "distill.loop.steps=2", "distill.loop.batch_size=4", *extra]
    return [a for s in sets for a in ("--set", s)]


def test_distill_on_unlabelled_recordings_streams_and_needs_no_test_split(
    teacher_checkpoint, real_audio_dir, tmp_path
):
    run = tmp_path / "run"
    args = ["distill", "--init", str(teacher_checkpoint), "--audio", str(real_audio_dir)]
    assert main([*args, "--out", str(run), *_distill_sets(STUDENT)]) == 0
    model, meta = load_student(run / "student.pt")
    assert model.config.frontend.sample_rate == 22050 and model.config.frontend.window_s == 2.0
    assert meta["step"] == 2 and not (run / "metrics" / "eval.jsonl").exists()
    assert np.isfinite(meta["final_losses"]["loss"]) and meta["final_losses"]["loss_text"] == 0.0


def test_stream_sampler_resumes_where_it_stopped(real_audio_files):
    audio = StreamedAudio(
        find_recordings(real_audio_files), View(16_000, 16_000), View(16_000, 32_000)
    )
    straight = StreamSampler(audio, 3, seed=1)
    batches = [straight.next_batch() for _ in range(3)]
    resumed = StreamSampler(audio, 3, seed=1)
    resumed.next_batch()
    again = StreamSampler(audio, 3, seed=1)
    again.load_state_dict(resumed.state_dict())
    for expected in batches[1:]:
        got = again.next_batch()
        assert torch.equal(got.pcm, expected.pcm) and torch.equal(
            got.teacher_pcm, expected.teacher_pcm
        )
    assert (got.species == -1).all()


def test_the_student_front_end_is_set_in_one_place_only():
    with pytest.raises(ConfigError, match="distill.frontend") as err:
        load_config(overrides=['distill.student={"blocks": [[2, 8, 2]], "frontend": {}}'])
    assert "distill.sample_rate" in str(err.value) + str(err.value.hint)


def test_labelled_distillation_with_a_student_of_its_own_rate(
    tiny_world, teacher_checkpoint, tmp_path
):
    run = tmp_path / "run"
    args = ["distill", "--init", str(teacher_checkpoint), "--world", str(tiny_world)]
    assert main([*args, "--out", str(run), *_distill_sets(STUDENT)]) == 0
    evals = (run / "metrics" / "eval.jsonl").read_text().splitlines()
    assert json.loads(evals[-1])["stage"] == "student"
