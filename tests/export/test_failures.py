"""What must never reach a recorder: a tampered bundle, a graph that computes something else, an
INT8 model below the bar, a half-written bundle; and the engine command where it cannot run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from biovita.bundle import TOWER_NAME, load_bundle
from biovita.errors import BundleError
from biovita.parity import Tolerance
from export.cli import main
from export.errors import ExportError, ParityError, QuantisationError
from export.onnx_export import export_onnx
from export.package import ExportRequest, export_bundle
from export.quantise import judge_int8
from export.windows import WindowSources, manifest_windows
from tests.export.conftest import export_args
from tests.export.student import TINY
from trainer.models.compact import CompactAudioTower

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle_copy(jetson_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(jetson_bundle, tmp_path / "bundle"))


def test_a_tampered_tower_fails_verify_and_the_device_loader(bundle_copy, capsys):
    tower = bundle_copy / TOWER_NAME
    data = bytearray(tower.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    tower.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{TOWER_NAME} has sha256 .* the file was changed"):
        load_bundle(bundle_copy)
    assert main(["verify", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "sha256" in err and "hint: copy the bundle again" in err


def test_a_wrong_graph_with_matching_hashes_fails_verify_on_parity(bundle_copy, capsys):
    """Someone swaps in another model and re-hashes: only the parity re-run can catch it."""
    bundle = load_bundle(bundle_copy)
    export_onnx(CompactAudioTower(TINY), bundle.tower_path, bundle.manifest.tower.input_samples)
    bundle.update_manifest(lambda m: m)  # re-hash, as a careless tool would
    assert main(["verify", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert "does not reproduce pytorch-fp32 (stored)" in err and "min cosine" in err


def test_a_parity_failure_fails_the_export_and_writes_nothing(student, world, tmp_path):
    out = tmp_path / "never"
    request = ExportRequest(
        checkpoint=student[0],
        bank=student[1],
        out=out,
        target="cpu",
        precision="fp32",
        sources=WindowSources(clips=world),
        tolerance=Tolerance(max_abs=0.0),  # no two runtimes agree to the last bit
    )
    with pytest.raises(ParityError, match="onnxruntime-fp32 does not reproduce pytorch-fp32"):
        export_bundle(request)
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "the staging directory is removed"


def test_an_int8_model_below_the_bar_is_refused(jetson_bundle, world, tmp_path):
    """The judge compares against fp32 on the test clips: a model that names other species fails."""
    bundle = load_bundle(jetson_bundle)
    stranger = tmp_path / "other.onnx"
    export_onnx(CompactAudioTower(TINY), stranger, bundle.manifest.tower.input_samples)
    clips = manifest_windows(world, bundle.manifest.frontend, "test").pcm
    with pytest.raises(
        QuantisationError, match=r"keeps the fp32 top-1 species on .* \(needs 97%\)"
    ):
        judge_int8(bundle.tower_path, stranger, clips, 0, bundle.bank, "test clips")


def test_an_export_without_real_windows_is_refused(student, tmp_path):
    request = ExportRequest(student[0], student[1], tmp_path / "b", "cpu", WindowSources())
    with pytest.raises(ExportError, match="needs real windows") as err:
        export_bundle(request)
    assert "--clips" in err.value.hint


def test_int8_and_fp16_onnx_for_jetson_point_to_the_engine_command(student, world, tmp_path):
    args = export_args(student, world, "jetson", tmp_path / "b") + ["--precision", "int8"]
    with pytest.raises(SystemExit):
        main([*args[:-2], "--precision", "fp16"])  # not a choice of --precision
    assert main(args) == 2


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_a_crash_mid_export_leaves_the_old_bundle_and_nothing_loadable(
    jetson_bundle, student, world, tmp_path
):
    out = Path(shutil.copytree(jetson_bundle, tmp_path / "bundle"))
    old_id = load_bundle(out).manifest.bundle_id
    args = export_args(student, world, "jetson", out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "export.cli", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        staged = lambda: any((p / TOWER_NAME).exists() for p in tmp_path.glob(".bundle.staging-*"))  # noqa: E731
        assert _wait_for(staged, 120), "the export never wrote its ONNX tower"
        proc.send_signal(signal.SIGKILL)  # a power cut, as far as the process can tell
        proc.wait(10)
    finally:
        proc.kill()
    staging = list(tmp_path.glob(".bundle.staging-*"))
    assert staging, "the half-written staging directory is still there"
    with pytest.raises(BundleError, match="is not a bundle"):
        load_bundle(staging[0])
    assert load_bundle(out).manifest.bundle_id == old_id  # the old bundle, intact and verified


def test_the_engine_command_says_why_it_cannot_run_here(jetson_bundle, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here: tests/export/test_engine.py builds engines")
    assert main(["engine", "--bundle", str(jetson_bundle), "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed here" in err and "JetPack 6 ships TensorRT 10.3" in err
    assert not (jetson_bundle / "engines").exists()
