"""The trainer's collectives on two gloo processes.

Global negatives: two ranks, each with part of a batch, give the loss and gradients of one process
on the whole batch (DDP's gradient average included). ``map_rows``: every rank gets every item's
row, in item order, each rank having embedded only its share."""

import pytest
import torch

from tests.trainer.collectives_worker import (
    CASES,
    MAP_CASES,
    Towers,
    global_batch,
    grads,
    item_rows,
)

from .torchrun import run_torchrun


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("collectives")
    run_torchrun("collectives_worker.py", out)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def _single_process(case: str, across_ranks: bool = True):
    towers = Towers()
    loss = towers(*global_batch(case), across_ranks=across_ranks)  # no process group here
    loss.backward()
    return loss.item(), grads(towers)


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_match_one_process_on_the_concatenated_batch(ranks, case):
    loss, expected = _single_process(case)
    for rank in ranks:
        assert rank[case]["loss"] == pytest.approx(loss, rel=1e-5)
        for name, grad in expected.items():
            torch.testing.assert_close(rank[case]["grads"][name], grad, rtol=1e-5, atol=1e-6)


def test_per_rank_negatives_would_give_other_gradients(ranks):
    # The check above can fail: rank 0's half of the batch alone moves the weights differently.
    towers = Towers()
    xa, xb, labels = global_batch("species")
    towers(xa[:5], xb[:5], labels[:5]).backward()
    assert not torch.allclose(grads(towers)["a.weight"], ranks[0]["species"]["grads"]["a.weight"])


@pytest.mark.parametrize("case", list(MAP_CASES))
def test_map_rows_gives_every_rank_all_rows_in_order(ranks, case):
    expected = item_rows(range(MAP_CASES[case]))
    for rank in ranks:
        torch.testing.assert_close(rank[f"map_{case}"], expected, rtol=0, atol=0)
