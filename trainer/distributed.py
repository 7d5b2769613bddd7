"""torchrun DDP: one process per device; gloo on CPU (how the tests run it), NCCL on GPUs.

``gather_rows`` is how the contrastive losses see global negatives: every rank's embeddings,
concatenated in rank order, with the gradient flowing back to the rank that made each row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import distributed as dist
from torch.distributed.nn import functional as dist_nn

DEFAULT_TIMEOUT_S = 1800.0  # a collective's watchdog; torch's default is 10 min (NCCL) / 30 (gloo)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average logged numbers over ranks (each rank saw a different part of the data)."""
        if not self.enabled or not values:
            return values
        names = sorted(values)
        t = torch.tensor([values[n] for n in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(names, (t / self.world_size).tolist(), strict=True))

    def gather(self, obj):
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def world_size() -> int:
    """Processes in the default group (1 when there is none)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """Every rank's rows of each ``[n_rank, ...]`` tensor, concatenated in rank order, and where
    this rank's rows start in them.

    Ranks may hold different numbers of rows (Stage 2's audio-image pairs exist only where a
    species has images): rows are padded to the largest count for the collective and the padding
    dropped after. A tensor that requires grad is gathered with
    ``torch.distributed.nn.functional.all_gather``, whose backward sums each row's gradient from
    every rank's loss back onto the rank that owns it. Without a process group: the tensors as
    they are, offset 0. Every rank must call this the same number of times (it is a collective).
    """
    if world_size() == 1:
        return list(tensors), 0
    device = tensors[0].device
    count = torch.tensor([tensors[0].shape[0]], dtype=torch.long, device=device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    most, rank = max(counts), dist.get_rank()
    gathered = []
    for tensor in tensors:
        pad = tensor.new_zeros((most - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad]) if pad.shape[0] else tensor
        if tensor.requires_grad:
            parts = dist_nn.all_gather(padded)
        else:
            parts = [torch.empty_like(padded) for _ in counts]
            dist.all_gather(parts, padded.contiguous())
        gathered.append(torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)]))
    return gathered, sum(counts[:rank])


def setup(timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join the process group torchrun describes in the environment, if any.

    ``timeout_s`` is how long a collective may wait for the slowest rank before the watchdog
    ends the run (``train.timeout_s`` in the recipe).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s)
        )
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistContext(rank=rank, world_size=world_size, device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
