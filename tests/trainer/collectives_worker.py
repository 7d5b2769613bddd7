"""Run under torchrun: the trainer's collectives on two ranks.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 collectives_worker.py OUT

- Contrastive losses with global negatives: each case's global batch is split unevenly over the
  ranks (one case leaves rank 1 empty); every rank records its loss and DDP-averaged gradients.
- ``map_rows``: items embedded in shares (one case has fewer items than ranks); every rank records
  the rows it got back.

Each rank writes OUT/rank<r>.pt; the test computes the same in one process and compares.
"""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from trainer import distributed
from trainer.distributed import map_rows
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


# items -> rows: each row names its item, so order and completeness both show
MAP_CASES = {"uneven": 7, "fewer_items_than_ranks": 1}


def item_rows(items) -> torch.Tensor:
    return torch.tensor([[float(i), float(i) ** 2] for i in items])


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
    for case, n in MAP_CASES.items():
        report[f"map_{case}"] = map_rows(item_rows, range(n), batch_size=2)
    torch.save(report, out / f"rank{dist.rank}.pt")
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
