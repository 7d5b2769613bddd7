"""AMP safety: the front-end in float32 under autocast, clipped augmentation, and a step whose
inputs or loss are not finite that changes neither the weights nor the BatchNorm statistics.

On the CPU with bf16 and fp16 autocast; the ``gpu`` tests repeat the tower check under CUDA fp16.
"""

import json

import numpy as np
import pytest
import torch
from torch import nn

from trainer.data import EpochSampler
from trainer.loop import LoopConfig, train
from trainer.losses import cosine_distill
from trainer.models.compact import CompactAudioTower, CompactConfig
from trainer.models.frontend import LogMel

from .tones import SPEC, tone, tone_data

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    ],
)


LOUD = 2.0  # a full-scale tone after +6 dB of gain (the sampler draws up to +6 dB)


def tiny_tower() -> CompactAudioTower:
    torch.manual_seed(0)
    return CompactAudioTower(
        CompactConfig(embed_dim=16, stem_channels=8, blocks=[(2, 8, 2)], head_channels=16)
    )


def test_the_hazard_is_real_a_loud_tone_overflows_float16_power():
    frames = LogMel(SPEC).frames(torch.from_numpy(tone(LOUD))[None])
    spectrum = (frames @ LogMel(SPEC).dft).half()
    assert not torch.isfinite(spectrum * spectrum).all()  # |X|^2 past 65504


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_logmel_computes_in_float32_under_cpu_autocast(dtype):
    logmel, pcm = LogMel(SPEC), torch.from_numpy(tone(LOUD))[None]
    with torch.autocast("cpu", dtype=dtype):
        out = logmel(pcm)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, logmel(pcm), rtol=0, atol=0)


def _tower_step_under_autocast(device: str, dtype: torch.dtype) -> CompactAudioTower:
    tower = tiny_tower().to(device).train()
    pcm = torch.from_numpy(np.stack([tone(LOUD), tone(LOUD, 3000.0)])).to(device)
    try:
        with torch.autocast(device, dtype=dtype):
            out = tower(pcm)
    except RuntimeError as err:  # an old CPU build without half kernels for some op
        pytest.skip(f"{dtype} autocast is not supported on this {device}: {err}")
    assert torch.isfinite(out).all()
    return tower


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_loud_window_leaves_batchnorm_statistics_finite(device, dtype):
    tower = _tower_step_under_autocast(device, dtype)
    stats = [m.running_var for m in tower.modules() if isinstance(m, nn.BatchNorm2d)]
    assert stats and all(torch.isfinite(s).all() for s in stats)


def test_augmented_windows_are_clipped_to_full_scale():
    sampler = EpochSampler(tone_data(amplitude=1.0), batch_size=6, seed=0)
    pcm = torch.cat([sampler.next_batch().pcm for _ in range(8)])
    assert pcm.abs().max() == 1.0  # some gains above 0 dB reached full scale, none went past


class ToneTask(nn.Module):
    """The compact tower pulled towards a fixed direction per species: a real step of the loop."""

    name = "tones"

    def __init__(self, sampler: EpochSampler, poison_call: int, poison: float) -> None:
        super().__init__()
        self.tower, self.sampler = tiny_tower(), sampler
        self.targets = nn.functional.normalize(
            torch.randn(2, 16, generator=torch.Generator()), dim=-1
        )
        self._calls, self.poison_call, self.poison = 0, poison_call, poison
        sampler_next = sampler.next_batch

        def next_batch():
            batch, self._calls = sampler_next(), self._calls + 1
            if self._calls == self.poison_call:
                batch.pcm[0] = self.poison
            return batch

        sampler.next_batch = next_batch

    def param_groups(self, lr):
        return [{"params": list(self.tower.parameters()), "lr": lr}]

    def forward(self, batch, step):
        loss = cosine_distill(self.tower(batch.pcm), self.targets[batch.species])
        return {"loss": loss, "loss_cosine": loss}

    def after_step(self, step, losses):
        return {}

    def extra_state(self):
        return {}

    def load_extra_state(self, state):
        pass


def _run(tmp_path, name, poison, stop_after=None, amp="off") -> tuple[ToneTask, list[dict]]:
    cfg = LoopConfig(steps=2, batch_size=4, warmup_steps=0, log_every=1, amp=amp)
    task = ToneTask(EpochSampler(tone_data(), cfg.batch_size, seed=0), 2, poison)
    train(task, cfg, tmp_path / name / "state.pt", tmp_path / name / "m.jsonl", None, stop_after)
    lines = (tmp_path / name / "m.jsonl").read_text().splitlines()
    return task, [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    "poison", [float("nan"), 1e30], ids=["nan-input", "finite-input-infinite-loss"]
)
def test_a_nonfinite_step_changes_no_weight_or_statistic(tmp_path, poison):
    one_step, _ = _run(tmp_path, "one", poison, stop_after=1)
    skipped, metrics = _run(tmp_path, "two", poison)
    assert [m["skipped_steps"] for m in metrics] == [0, 1]
    expected = one_step.state_dict()
    for name, value in skipped.state_dict().items():  # BatchNorm running stats included
        assert torch.equal(value, expected[name]), name


def test_the_loop_trains_under_cpu_bf16_autocast(tmp_path):
    task, metrics = _run(tmp_path, "bf16", poison=0.0, amp="bf16")
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert [m["skipped_steps"] for m in metrics] == [0, 0]
