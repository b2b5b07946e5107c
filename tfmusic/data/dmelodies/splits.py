"""The reference loader's 70/20/10 split of dMelodies, computed on indices."""

from __future__ import annotations

import functools

import numpy as np

from tfmusic.data.dmelodies.factors import NUM_ITEMS

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.70, 0.20)  # test takes the rest


def split_permutation(seed: int = 0, n: int = NUM_ITEMS) -> np.ndarray:
    """The row order of the reference loader: ``np.random.seed(seed); np.random.shuffle(rows)``.

    The legacy shuffle draws the same swaps for a 1-D index vector as for 2-D rows, so the
    permutation can be computed on indices (checked in the tests), without touching global state.
    """
    perm = np.arange(n, dtype=np.int64)
    np.random.RandomState(seed).shuffle(perm)
    return perm


def split_bounds(n: int) -> tuple[int, int]:
    """(train end, validation end) positions for the 70/20/10 split of ``n`` rows."""
    a, b = SPLIT_FRACTIONS
    return int(a * n), int((a + b) * n)


@functools.lru_cache(maxsize=4)
def _split_orders(seed: int, limit: int | None) -> dict[str, np.ndarray]:
    perm = split_permutation(seed)
    t_end, v_end = split_bounds(len(perm))
    orders = {"train": perm[:t_end], "validation": perm[t_end:v_end], "test": perm[v_end:]}
    if limit is not None:
        orders = {k: v[v < limit] for k, v in orders.items()}
    for v in orders.values():
        v.setflags(write=False)
    return orders


def split_indices(seed: int = 0, limit: int | None = None) -> dict[str, np.ndarray]:
    """Dataset indices of each split, in the reference loader's (shuffled) iteration order.

    ``limit`` keeps only items with index < limit; each keeps the split and relative order it has
    in the full dataset, so a small run is an exact subset of the full one.
    """
    if limit is not None and not 1 <= limit <= NUM_ITEMS:
        raise ValueError(f"limit must lie in 1..{NUM_ITEMS}, got {limit}")
    return dict(_split_orders(int(seed), None if limit is None or limit == NUM_ITEMS else int(limit)))
