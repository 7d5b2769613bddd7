"""Every stage (0, 1, 2, distill, bank) of ``biovita-train pipeline`` under
``torchrun --nproc_per_node 2`` (gloo), on the tiny world at a few steps per stage (Stage 1 with a DataLoader worker per rank).

The quick evaluations and the bank are computed by both ranks, each a share, and gathered: what
rank 0 wrote must equal one process's evaluation of the same checkpoints.
"""

import json

import numpy as np
import pytest
import torch

from biovita.bank import SpeciesBank
from trainer.bank import build_bank
from trainer.config import load_config
from trainer.embed import load_embedder
from trainer.evaluate import quick_eval
from trainer.stages import OUTPUTS, STAGES, load_data

from .conftest import TINY_RECIPE
from .torchrun import run_torchrun

pytestmark = pytest.mark.slow

SHORT = [f"{stage}.loop.steps=2" for stage in ("stage0", "stage1", "stage2", "distill")]
SHORT += ["stage2.ramp_steps=1", "distributed.timeout_s=300"]
# Stage 1 streams from disk: one loader worker per rank, clips decoded on demand, none kept.
SHORT += ["stage1.loop.loader_workers=1", "data.cache_audio=false"]


@pytest.fixture(scope="module")
def run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("torchrun_run")
    sets = [a for s in [*TINY_RECIPE, *SHORT] for a in ("--set", s)]
    args = ["pipeline", "--world", tiny_world, "--out", out, "--threads", "1", *sets]
    run_torchrun("-m", "trainer.cli", *args, timeout=600)
    return out


def _config(tiny_world):
    return load_config(None, [*TINY_RECIPE, *SHORT, f"data.manifest={tiny_world / 'manifest.csv'}"])


def test_every_stage_writes_its_output_once(run):
    for stage in STAGES:  # stage2_warmup is written only by the paper recipe
        assert (run / OUTPUTS[stage]).stat().st_size > 0, stage
    for stage in ("stage0", "stage1", "stage2", "distill"):
        state = torch.load(run / "state" / f"{stage}.pt", weights_only=True)["state_dict"]
        assert state["step"] == 2 and len(state["sampler"]) == 2  # both ranks trained
    evals = (run / "metrics" / "eval.jsonl").read_text().splitlines()
    assert [json.loads(e)["stage"] for e in evals] == ["stage1", "stage2", "student"]


def test_the_sharded_quick_evaluation_equals_one_process(run, tiny_world):
    cfg = _config(tiny_world)
    data = load_data(cfg, [cfg.data.eval_split], image_splits=cfg.data.train_splits)
    written = [json.loads(e) for e in (run / "metrics" / "eval.jsonl").read_text().splitlines()]
    for scores in written:
        alone = quick_eval(load_embedder(run / f"{scores['stage']}.pt"), data)
        assert {k: scores[k] for k in alone} == pytest.approx(alone)


def test_the_sharded_bank_equals_one_process(run, tiny_world):
    cfg = _config(tiny_world)
    data = load_data(cfg, image_splits=cfg.bank.image_splits)
    alone = build_bank(load_embedder(run / OUTPUTS["stage2"]), data, cfg.bank.image_weight)
    written = SpeciesBank.load(run / OUTPUTS["bank"])
    assert written.ids == alone.ids
    np.testing.assert_allclose(written.embeddings, alone.embeddings, rtol=0, atol=1e-5)
