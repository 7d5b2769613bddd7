"""Shared, session-scoped inputs: one synthetic world, one briefly trained tiny student, and the
bundles exported from it (building them is the slow part, so every test reads the same ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.cli import main
from tests.export.student import make_world, train_student


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("export-world"))


@pytest.fixture(scope="session")
def student(world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(student.pt, species.npz)``."""
    return train_student(world, tmp_path_factory.mktemp("export-run"))


def export_args(student: tuple[Path, Path], world: Path, target: str, out: Path) -> list[str]:
    checkpoint, bank = student
    return [
        "--target", target, "--checkpoint", str(checkpoint), "--bank", str(bank),
        "--out", str(out), "--clips", str(world),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def jetson_bundle(student, world, real_audio_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "jetson"
    args = export_args(student, world, "jetson", out) + ["--audio", str(real_audio_dir), "--tar"]
    assert main(["export", *args]) == 0
    return out


@pytest.fixture(scope="session")
def cpu_bundle(student, world, real_audio_dir, tmp_path_factory) -> Path:
    """Exported with the top-level form of the command, as the issue writes it.

    The INT8 bar is lowered to 90% for this 40-step, 32-dim student: at the default 97% the
    mixed-precision search lands on 97.0% of its 100 test clips, one clip from the bar (many of
    them sit near ties), too close for a stable test. The refusal and the search are tested
    separately (test_failures, test_mixed_precision).
    """
    out = tmp_path_factory.mktemp("bundles") / "cpu"
    args = export_args(student, world, "cpu", out)
    args += ["--audio", str(real_audio_dir), "--min-int8-agreement", "0.9"]
    assert main(args) == 0
    return out
