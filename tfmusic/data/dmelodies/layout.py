"""Where every item of a generated dMelodies folder lives: shard plan, shard names, the metadata file.

Shared by the writer (:mod:`.pipeline`) and the readers (:mod:`.reader`): a reader finds an item's
shard and offset from the same plan the job wrote it with, so the plan is its own module and
neither side imports the other for it.
"""

from __future__ import annotations

from typing import Mapping

from tfmusic.data.dmelodies.factors import DATASET_NAME
from tfmusic.data.dmelodies.splits import SPLITS, split_indices

DEFAULT_NUM_SHARDS = {"train": 16, "validation": 4, "test": 2}
METADATA = "metadata.json"  # written last: a folder without it is not a dataset


def parse_num_shards(text: str | None) -> dict[str, int]:
    """``'16,4,2'`` or ``'train=16,validation=4,test=2'`` (missing splits keep the default)."""
    shards = dict(DEFAULT_NUM_SHARDS)
    if not text:
        return shards
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" not in p for p in parts):
            if len(parts) != len(SPLITS):
                raise ValueError
            shards = dict(zip(SPLITS, (int(p) for p in parts)))
        else:
            for p in parts:
                k, v = p.split("=", 1)
                if k.strip() not in shards:
                    raise ValueError
                shards[k.strip()] = int(v)
    except ValueError:
        raise ValueError(f"--num-shards '{text}': expected 'T,V,E' or 'train=T,validation=V,test=E' "
                         f"with positive integers") from None
    if any(v < 1 for v in shards.values()):
        raise ValueError(f"--num-shards '{text}': shard counts must be >= 1")
    return shards


def plan_shards(seed: int, num_shards: Mapping[str, int], limit: int | None) -> list[tuple]:
    """``(split, shard, num_shards, start, stop)`` for every shard: contiguous ranges of split order."""
    orders = split_indices(seed, limit)
    plan = []
    for split in SPLITS:
        total = len(orders[split])
        k = max(1, min(int(num_shards[split]), total))
        bounds = [(s * total) // k for s in range(k + 1)]
        plan.extend((split, s, k, bounds[s], bounds[s + 1]) for s in range(k))
    return plan


def shard_name(split: str, shard: int, num_shards: int) -> str:
    from tfmusic.data.tfds_metadata import shard_filename

    return shard_filename(DATASET_NAME, split, shard, num_shards)
