"""Run under torchrun: contrastive losses with global negatives, each rank on its slice of a batch.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 global_negatives_worker.py OUT

Each case's global batch is split unevenly over the ranks (one case leaves rank 1 empty); every rank
writes its loss and its DDP-averaged gradients to OUT/rank<r>.pt. The test computes the same case
in one process on the whole batch and compares.
"""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from trainer import distributed
from trainer.losses import LogitScale, contrastive

# name -> (rows per rank, labelled?)
CASES = {
    "species": ([5, 3], True),
    "pairs": ([4, 4], False),
    "one_rank_empty": ([6, 0], True),
}


class Towers(nn.Module):
    """Two linear towers and a learnt temperature: the shape of every contrastive term."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.scale = nn.Linear(6, 4), nn.Linear(5, 4), LogitScale()

    def forward(self, xa, xb, labels, across_ranks=True) -> torch.Tensor:
        a, b = F.normalize(self.a(xa), dim=-1), F.normalize(self.b(xb), dim=-1)
        return contrastive(a, b, self.scale(), labels, across_ranks=across_ranks)


def global_batch(case: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    sizes, labelled = CASES[case]
    g = torch.Generator().manual_seed(len(case))
    n = sum(sizes)
    labels = torch.randint(0, 3, (n,), generator=g) if labelled else None
    return torch.randn(n, 6, generator=g), torch.randn(n, 5, generator=g), labels


def rank_slice(case: str, rank: int) -> slice:
    sizes = CASES[case][0]
    return slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist = distributed.setup(timeout_s=120)
    report = {}
    for case in CASES:
        towers = Towers()
        model = DistributedDataParallel(towers)
        xa, xb, labels = global_batch(case)
        own = rank_slice(case, dist.rank)
        loss = model(xa[own], xb[own], None if labels is None else labels[own])
        loss.backward()
        # The loss each rank logs is the mean over ranks (trainer.loop's dist.mean).
        logged = dist.mean({"loss": loss.item()})["loss"]
        report[case] = {"loss": logged, "grads": grads(towers)}
    torch.save(report, out / f"rank{dist.rank}.pt")
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
