"""The losses of every stage, as plain functions of embeddings (unit-norm rows unless noted).

- ``contrastive``: symmetric InfoNCE (CLIP), the ATC / AIC / ITC terms of BioVITA. With
  ``labels``, rows of the same species are all positives (soft targets spread over them), so two
  clips of one species in a batch are not pushed apart as if they were different species. Under
  DDP the negatives are global: each rank scores its own rows against every rank's rows (the
  official code's 8 x 64 = 512 in Stage 1), and the loss and gradients equal one process's on
  the concatenated batch.
- ``cosine_distill`` / ``mse_distill``: the student reproducing the frozen teacher's embedding.
- ``text_anchor``: the student's embedding classified against fixed species text embeddings
  (keeps the text-space structure, arXiv 2602.00681).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from trainer.distributed import gather_rows, world_size

INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the learnt scale at 100


class LogitScale(nn.Module):
    """A learnable inverse temperature, stored as a log (CLIP), initialised at 1/0.07."""

    def __init__(self, temperature: float = INIT_TEMPERATURE) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def _row_losses(
    rows: torch.Tensor,
    columns: torch.Tensor,
    scale: torch.Tensor | float,
    row_labels: torch.Tensor,
    column_labels: torch.Tensor,
) -> torch.Tensor:
    """Per row, the cross-entropy against soft targets spread over the same-label columns."""
    logits = scale * rows @ columns.T
    same = (row_labels[:, None] == column_labels[None, :]).to(logits.dtype)
    targets = same / same.sum(dim=1, keepdim=True)
    return torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1)


def contrastive(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    labels: torch.Tensor | None = None,
    across_ranks: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE between row-paired ``a`` and ``b`` ``[N, D]``; ``scale`` = 1/temperature.

    Without ``labels`` a row's only positive is its pair. Under a process group (and
    ``across_ranks``) this rank's rows are scored against every rank's, and the result is this
    rank's share of the global loss scaled by the world size: DDP's gradient average and the
    logged mean over ranks then give exactly the global batch's loss and gradient, even when the
    ranks hold different numbers of rows. Every rank must call it (it gathers), even with no rows.
    """
    local = [a, b] if labels is None else [a, b, labels.to(a.device)]
    gathered, offset = gather_rows(*local) if across_ranks else (local, 0)
    all_a, all_b = gathered[0], gathered[1]
    if labels is None:  # pairs only: a row's label is its index in the global batch
        labels = offset + torch.arange(a.shape[0], device=a.device)
        all_labels = torch.arange(all_a.shape[0], device=a.device)
    else:
        labels, all_labels = local[2], gathered[2]
    total = all_a.shape[0]
    if total == 0:  # nothing anywhere: a zero that still touches the scale (DDP sees it used)
        return 0.0 * torch.as_tensor(scale).sum()
    a_to_b = _row_losses(a, all_b, scale, labels, all_labels).sum()
    b_to_a = _row_losses(b, all_a, scale, labels, all_labels).sum()
    share = world_size() if across_ranks else 1
    return 0.5 * (a_to_b + b_to_a) * share / total


def cosine_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between student and teacher rows (0 when they point the same way)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def mse_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error per embedding (summed over dimensions, averaged over the batch)."""
    return ((student - teacher) ** 2).sum(dim=-1).mean()


def text_anchor(
    student: torch.Tensor, species_text: torch.Tensor, labels: torch.Tensor, scale: float
) -> torch.Tensor:
    """Cross-entropy of the student's species scores against fixed text embeddings ``[C, D]``."""
    return F.cross_entropy(scale * student @ species_text.T, labels)
