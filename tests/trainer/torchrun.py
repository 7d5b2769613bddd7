"""Launch a worker script of this folder under ``torchrun --nproc_per_node 2`` (gloo, CPU)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_torchrun(worker: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``tests/trainer/<worker> ARGS...`` on two processes (``worker="-m"``: the module
    ``ARGS[0]``, e.g. ``trainer.cli``); fails with their stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        worker if worker == "-m" else str(ROOT / "tests" / "trainer" / worker),
        *map(str, args),
    ]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done
