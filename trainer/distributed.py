"""torchrun DDP: one process per device; gloo on CPU (how the tests run it), NCCL on GPUs.

``gather_rows`` is how the contrastive losses see global negatives: every rank's embeddings,
concatenated in rank order, with the gradient flowing back to the rank that made each row.
``map_rows`` is how frozen-tower caches, quick evaluations and the species bank are computed:
each rank embeds one share of the items on its own device and every rank gets all the rows, so
no rank sits at a barrier while another does the whole job (a ViT-L/14 image took 2.47 s on a
CPU: rank 0 alone embedding a bank's images outlived the collective watchdog).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import distributed as dist
from torch.distributed.nn import functional as dist_nn
from tqdm import tqdm

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


def _rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


@torch.no_grad()
def map_rows(
    embed: Callable[[Sequence], torch.Tensor],
    items: Sequence,
    batch_size: int = 256,
    desc: str | None = None,
    across_ranks: bool = True,
) -> torch.Tensor:
    """``embed`` over ``items`` in batches, ``[len(items), ...]`` in item order, on every rank.

    Under a process group each rank takes one contiguous share (``items`` may be lazy: a share is
    ``items[start:end]`` sliced batch by batch, so a rank decodes only its own), and the rows are
    gathered. ``embed`` returns one row per item on the caller's device. A collective: every rank
    must call it, with the same ``items`` (``across_ranks=False``: this process does them all).
    """
    n = len(items)
    ranks, rank = (world_size(), _rank()) if across_ranks else (1, 0)
    if n == 0:
        raise ValueError("map_rows: no items to embed")
    share = -(-n // ranks)
    start, end = min(n, rank * share), min(n, (rank + 1) * share)
    starts = range(start, end, batch_size)
    bar = tqdm(starts, desc=desc, disable=desc is None or rank != 0, leave=False)
    rows = [embed(items[i : min(i + batch_size, end)]) for i in bar]
    local = torch.cat(rows) if rows else None
    if ranks == 1:
        return local
    # A rank with no share (fewer items than ranks) still takes part: it learns the row shape.
    like = [None] * ranks
    dist.all_gather_object(like, None if local is None else (local.shape[1:], local.dtype))
    shape, dtype = next(x for x in like if x is not None)
    if local is None:
        local = torch.empty((0, *shape), dtype=dtype, device=_device_of_group())
    (gathered,), _ = gather_rows(local)
    return gathered


def _device_of_group() -> torch.device:
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def setup(timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join the process group torchrun describes in the environment, if any.

    ``timeout_s`` is how long a collective may wait for the slowest rank before the watchdog
    ends the run (``distributed.timeout_s`` in the recipe).
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
