"""bench.gpu_check: skips with its reason without a GPU; its training part runs on a CPU (bf16,
tiny HTS-AT) and, on a CUDA machine, at full size under fp16."""

import json

import pytest
import torch

from bench.gpu_check import main

NO_GPU = "no CUDA GPU on this machine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check runs instead")
def test_without_a_gpu_it_writes_why_it_skipped(tmp_path):
    assert main(["--out", str(tmp_path / "g.json")]) == 0
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["gpu"] is None and "no CUDA GPU" in report["skipped"]
    assert "amp_training" not in report  # no figure pretends to be a GPU's


def _check(tmp_path, *args) -> dict:
    assert main(["--out", str(tmp_path / "g.json"), *args]) == 0
    return json.loads((tmp_path / "g.json").read_text())


def _assert_trained_finite(figures: dict, steps: int) -> None:
    assert figures["timed_steps"] == steps and figures["steps_per_s"] > 0
    assert figures["all_losses_finite"] and figures["weights_and_statistics_finite"]


@pytest.mark.slow
def test_the_training_part_runs_on_a_cpu_under_bf16(tmp_path):
    figures = _check(
        tmp_path, "--device", "cpu", "--audio-size", "tiny", "--batch", "4", "--steps", "1"
    )["amp_training"]
    _assert_trained_finite(figures, 1)
    assert figures["autocast"] == "bf16" and figures["skipped_steps"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_full_size_amp_training_on_the_gpu(tmp_path):
    report = _check(tmp_path, "--steps", "2")
    figures = report["amp_training"]
    _assert_trained_finite(figures, 2)
    assert figures["batch"] == 64 and figures["autocast"] == "fp16"
    assert "skipped" in report["tensorrt"] or {"fp16", "int8"} <= set(report["tensorrt"])
