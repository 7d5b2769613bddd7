"""torchrun DDP on CPU: 2 processes, gloo. Each rank trains on different data; gradients are
all-reduced, so the ranks must end with identical weights."""

import json

import torch

from .torchrun import run_torchrun


def test_two_process_gloo_ddp(tiny_world, tmp_path):
    run_torchrun("ddp_worker.py", tiny_world, tmp_path)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert not set(reports[0]["first_epoch"]) & set(reports[1]["first_epoch"])  # disjoint data
    assert reports[0]["sha"] == reports[1]["sha"]  # gradients were averaged across ranks

    state = torch.load(tmp_path / "state.pt", weights_only=True)["state_dict"]
    assert len(state["sampler"]) == 2 and len(state["rng"]) == 2  # each rank resumes its own
    assert (tmp_path / "metrics.jsonl").read_text().strip()
