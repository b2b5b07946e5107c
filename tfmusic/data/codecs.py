"""Token codecs (:class:`tfmusic.music.codec.TokenCodec`) of the token datasets, by model family."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DMelodiesCodec:
    """dMelodies tokens; attributes are the 9 factors recovered with the reference rule (-1: undecidable)."""

    name: str = "dmelodies"
    ticks_per_beat: int = 2

    def events(self, ids: np.ndarray) -> list[list[str]]:
        from tfmusic.data import dmelodies

        return dmelodies.token_names(np.atleast_2d(np.asarray(ids)))

    def attributes(self, ids: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        from tfmusic.data import dmelodies

        return dmelodies.decode_factors(np.atleast_2d(np.asarray(ids))).astype(np.float64), tuple(dmelodies.FACTOR_NAMES)


@dataclass(frozen=True)
class MeasureCodec:
    """Measure-VAE tokens (24 ticks per bar); attributes are the four bar attributes."""

    name: str = "measure"
    ticks_per_beat: int = 6

    def events(self, ids: np.ndarray) -> list[list[str]]:
        from tfmusic.data import measures
        from tfmusic.music.render import HOLD

        out = []
        for row in np.atleast_2d(np.asarray(ids)):
            toks = measures.ids_to_tokens(np.clip(row, 0, measures.VOCAB_SIZE - 1))
            out.append([HOLD if t in ("<pad>", "START", "END") else t for t in toks])
        return out

    def attributes(self, ids: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        from tfmusic.music.attributes import ATTRIBUTE_NAMES, measure_attributes

        events = self.events(ids)
        return np.stack([measure_attributes(e) for e in events]).astype(np.float64), tuple(ATTRIBUTE_NAMES)


CODECS = {"dmelodies": DMelodiesCodec(), "measure": MeasureCodec()}


def codec_for(family: str):
    """The codec of a model family (``dmelodies``, ``measure``); None for image models."""
    if family == "image":
        return None
    try:
        return CODECS[family]
    except KeyError:
        raise ValueError(f"no token codec for model family {family!r}; known: {sorted(CODECS)}") from None
