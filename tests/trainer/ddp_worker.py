"""Run under torchrun: a few Stage 0 steps with DDP, then each rank reports its weights and data.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py WORLD OUT
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

from tests.trainer.conftest import TINY_RECIPE
from trainer import distributed
from trainer.config import load_config
from trainer.data import EpochSampler
from trainer.loop import train
from trainer.models.vita import VitaModel
from trainer.stages import image_text_from, load_data
from trainer.tasks import Stage0Task


def main(world: Path, out: Path) -> None:
    torch.set_num_threads(1)
    cfg = load_config(None, [*TINY_RECIPE, f"data.manifest={world / 'manifest.csv'}"])
    dist = distributed.setup()
    loop = cfg.stage0.loop
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    vita = VitaModel(image_text_from("tiny", cfg))
    data = load_data(cfg)
    # No oversampling: without repeats the ranks' shares of an epoch are disjoint sets of images.
    sampler = EpochSampler(
        data,
        loop.batch_size,
        loop.per_species,
        0,
        dist.rank,
        dist.world_size,
        "images",
        min_per_species=1,
    )
    first = sampler._epoch_order(0).tolist()
    task = Stage0Task(vita, data, sampler)
    train(task, loop, out / "state.pt", out / "metrics.jsonl", dist)
    digest = hashlib.sha256()
    for name, tensor in sorted(vita.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().numpy().tobytes())
    report = {
        "rank": dist.rank,
        "world_size": dist.world_size,
        "sha": digest.hexdigest(),
        "first_epoch": first,
    }
    (out / f"rank{dist.rank}.json").write_text(json.dumps(report))
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
