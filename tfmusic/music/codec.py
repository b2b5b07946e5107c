"""What a token VAE's output means musically: the one interface traversal and rendering need.

A :class:`TokenCodec` turns model token ids into render events (note names, ``'rest'``, ``'__'``
holds) and recomputes the attributes a latent dimension may regularize. Each dataset supplies its
own codec (``tfmusic.data.codecs``), so code in ``tfmusic.music`` never needs to know datasets.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TokenCodec(Protocol):
    name: str
    ticks_per_beat: int

    def events(self, ids: np.ndarray) -> list[list[str]]:
        """Token ids ``(N, T)`` -> one list of render events per row."""

    def attributes(self, ids: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        """Attributes ``(N, A)`` recomputed from token ids, and their names."""
