"""Chunked overlap-add processing of any-length audio with bounded memory.

A long mixture is cut into chunks of ``chunk_samples`` that overlap by ``overlap_samples``; each
chunk goes through a user function (the "separate one chunk" step: a Keras separator, an ONNX
session, a remote server...) and the outputs are blended back with a raised-cosine crossfade
(weights normalized by their sum, so any overlap pattern adds up to exactly 1).

Two kinds of outputs are stitched, told apart by their last-axis length:

- waveforms ``(..., chunk_samples)`` -> ``(..., total_samples)``, flushed to ``sink`` as soon as a
  region is final, so at most one chunk plus one overlap is held per output (bounded memory);
- frame curves ``(..., 1 + chunk_samples // frame_hop)`` (``center=True`` STFT frames, e.g. activity)
  -> ``(..., 1 + total_samples // frame_hop)``, kept whole (they are ~1000x smaller).

Chunk starts are multiples of ``frame_hop`` so frame curves line up. The last chunk is zero-padded
to the full chunk length (one input shape: graphs are traced once) and its outputs cropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tfmusic.audio.settings import DEFAULT as DEFAULT_SETTINGS
from tfmusic.audio.settings import HOP_LENGTH, AudioSettings, settings_of

__all__ = [
    "ChunkFn", "GraphChunkFn", "chunk_starts", "crossfade_window", "default_settings",
    "graph_chunk_fn", "separate_in_chunks", "separate_waveform", "settings_of",
]

DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 1.5
MIN_CHUNK_SECONDS = 1.0  # >= 1 s: STFT reflect padding and IASS's 21-frame median filter

ChunkFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]
"""Maps a chunk ``(C, L)`` float32 to named outputs (waveforms ``(C', L)`` or frame curves)."""

Sink = Callable[[str, np.ndarray], None]
"""Receives ``(name, finished waveform segment (C', n))`` in order, for streaming writes."""


def default_settings() -> AudioSettings:
    """tfmusic's audio defaults (:mod:`tfmusic.audio.settings`)."""
    return DEFAULT_SETTINGS


class GraphChunkFn:
    """A :data:`ChunkFn` running a Keras separator (``(1, C, L)`` -> ``{name: (1, ...)}``) as a TF graph.

    The TF graph boundary lives here, not in the model. One ``tf.function`` per channel count, so
    the channel dimension stays static whatever order mono and stereo songs come in (a single
    function with ``reduce_retracing`` generalizes it to ``None`` after a few shapes and the
    separator refuses that); ``reduce_retracing`` then only generalizes the chunk length. A call
    that fails drops its traced graph, so one bad input never leaves state behind for the next.
    The model's settings (:func:`settings_of`) are exposed as ``sample_rate``/``n_fft``/``hop_length``
    for :func:`separate_waveform`. TensorFlow is imported lazily.
    """

    def __init__(self, model: Callable, *, reduce_retracing: bool = False) -> None:
        self.model = model
        self.reduce_retracing = bool(reduce_retracing)
        settings = settings_of(model)
        self.sample_rate, self.n_fft, self.hop_length = settings.sample_rate, settings.n_fft, settings.hop_length
        self._graphs: dict[int, Callable] = {}

    def _graph(self, channels: int) -> Callable:
        graph = self._graphs.get(channels)
        if graph is None:
            import tensorflow as tf

            model = self.model
            graph = tf.function(lambda x: model(x, training=False), jit_compile=False,
                                reduce_retracing=self.reduce_retracing)
            self._graphs[channels] = graph
        return graph

    def reset(self) -> None:
        """Forget every traced graph (the next call traces afresh)."""
        self._graphs.clear()

    def __call__(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2:
            raise ValueError(f"expected a chunk shaped (channels, samples), got shape {chunk.shape}")
        channels = int(chunk.shape[0])
        try:
            outputs = self._graph(channels)(tf.constant(chunk[None]))
            if not isinstance(outputs, Mapping):
                raise TypeError(f"the separator returned {type(outputs).__name__}, expected a dict of outputs")
            return {name: value.numpy()[0] for name, value in outputs.items()}
        except Exception:
            self._graphs.pop(channels, None)
            raise


def graph_chunk_fn(model: Callable, *, reduce_retracing: bool = False) -> GraphChunkFn:
    """A :class:`GraphChunkFn` for ``model`` (kept as the name callers use)."""
    return GraphChunkFn(model, reduce_retracing=reduce_retracing)


def chunk_starts(total: int, chunk: int, overlap: int, hop: int = 1) -> list[int]:
    """Start sample of every chunk (multiples of ``hop``): step ``chunk - overlap``; the last chunk is
    moved back so it ends at ``total`` (rounded up to a hop), keeping one chunk shape throughout."""
    if chunk <= overlap:
        raise ValueError(f"chunk length ({chunk}) must exceed the overlap ({overlap})")
    starts = [0]
    while starts[-1] + chunk < total:
        starts.append(starts[-1] + chunk - overlap)
    if len(starts) > 1:
        starts[-1] = -(-(total - chunk) // hop) * hop
    return starts


def crossfade_window(length: int, fade_in: int, fade_out: int, margin_in: int = 0, margin_out: int = 0) -> np.ndarray:
    """Per-sample weight of one chunk: 0 over ``margin_in``, a sin^2 ramp up over the rest of
    ``fade_in`` minus both margins, 1 after; mirrored at the end (cos^2 ramp, then 0 over
    ``margin_out``).

    The neighbour's window is the complement over the shared region (its ramp has the same span), so
    the two always sum to exactly 1, and the ``margin`` samples next to each chunk edge, where the
    model lacks context, get no weight at all.
    """
    w = np.ones(length, dtype=np.float64)
    if fade_in > 0:
        ramp = fade_in - 2 * margin_in
        w[:margin_in] = 0.0
        w[margin_in : margin_in + ramp] = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / max(ramp, 1)) ** 2
    if fade_out > 0:
        ramp = fade_out - 2 * margin_out
        tail = w[length - fade_out :]
        tail[margin_out : margin_out + ramp] *= np.cos(0.5 * np.pi * (np.arange(ramp) + 0.5) / max(ramp, 1)) ** 2
        tail[margin_out + ramp :] = 0.0
    return w


def separate_in_chunks(
    waveform: np.ndarray,
    separate_chunk: ChunkFn,
    chunk_samples: int,
    overlap_samples: int,
    frame_hop: int = HOP_LENGTH,
    margin_samples: int | None = None,
    min_samples: int = 0,
    sink: Sink | None = None,
    progress: bool = True,
    description: str = "separating",
) -> dict[str, np.ndarray]:
    """Run ``separate_chunk`` over ``waveform`` ``(C, S)`` in crossfaded chunks.

    ``waveform`` is an array or any object with ``.shape`` and ``[:, a:b]`` slicing (e.g. a lazy
    file reader), so the input need not be in memory either.

    Returns every output stitched to full length; with ``sink``, waveform outputs are streamed to it
    instead (and left out of the result) so memory stays at about one chunk per output.
    ``margin_samples`` (default a third of the overlap): samples next to each inner chunk edge that
    get no weight; when it covers the model's receptive field, chunked output equals unchunked.
    ``min_samples``: shortest chunk ``separate_chunk`` accepts (e.g. > n_fft / 2 for a reflect-padded
    STFT); shorter audio is zero-padded up to it.
    """
    if not (hasattr(waveform, "shape") and hasattr(waveform, "__getitem__")):
        waveform = np.asarray(waveform, dtype=np.float32)
    if len(waveform.shape) != 2:
        raise ValueError(f"expected a waveform shaped (channels, samples), got shape {tuple(waveform.shape)}")
    total = int(waveform.shape[1])
    if total == 0:
        raise ValueError("cannot separate an empty waveform")
    # Round to whole hops so every chunk starts on a frame boundary; never longer than needed.
    chunk = -(-max(min(chunk_samples, total), min_samples, 1) // frame_hop) * frame_hop
    # At most half a chunk: neighbours' fade regions then never reach a third chunk's margins.
    overlap = min(-(-overlap_samples // frame_hop) * frame_hop, (chunk // 2 // frame_hop) * frame_hop)
    starts = chunk_starts(total, chunk, overlap, frame_hop) if chunk < total else [0]
    overlaps = [starts[i] + chunk - starts[i + 1] for i in range(len(starts) - 1)]  # per neighbour pair
    margin = overlap // 3 if margin_samples is None else int(margin_samples)
    margins = [max(0, min(margin, ov // 2)) for ov in overlaps]
    chunk_frames = 1 + chunk // frame_hop
    total_frames = 1 + total // frame_hop

    wave_acc: dict[str, np.ndarray] = {}  # weighted sums over [buf_start, buf_start + width)
    weight_acc = np.zeros(0, dtype=np.float64)
    buf_start = 0
    frame_acc: dict[str, np.ndarray] = {}
    frame_weight = np.zeros(total_frames, dtype=np.float64)
    finished: dict[str, np.ndarray] = {}  # full-length outputs, filled in place (no list + concatenate copy)

    def flush(upto: int) -> None:
        nonlocal weight_acc, buf_start
        n = upto - buf_start
        if n <= 0:
            return
        for name, acc in wave_acc.items():
            segment = (acc[..., :n] / np.maximum(weight_acc[:n], 1e-12)).astype(np.float32)
            if sink is not None:
                sink(name, segment)
            else:
                out = finished.get(name)
                if out is None:
                    out = finished[name] = np.empty(acc.shape[:-1] + (total,), dtype=np.float32)
                out[..., buf_start:upto] = segment
            wave_acc[name] = acc[..., n:]
        weight_acc = weight_acc[n:]
        buf_start = upto

    for index, start in enumerate(tqdm(starts, desc=description, unit="chunk", disable=not progress)):
        end = min(start + chunk, total)
        piece = np.asarray(waveform[:, start:end], dtype=np.float32)
        if piece.shape[1] < chunk:
            piece = np.pad(piece, ((0, 0), (0, chunk - piece.shape[1])))
        outputs = separate_chunk(np.ascontiguousarray(piece))
        fade_in, margin_in = (overlaps[index - 1], margins[index - 1]) if index > 0 else (0, 0)
        fade_out, margin_out = (overlaps[index], margins[index]) if index + 1 < len(starts) else (0, 0)
        weights = crossfade_window(chunk, fade_in, fade_out, margin_in, margin_out)[: end - start]
        # Grow the waveform buffer to cover [buf_start, end).
        width = end - buf_start
        if weight_acc.shape[0] < width:
            weight_acc = np.pad(weight_acc, (0, width - weight_acc.shape[0]))
        weight_acc[start - buf_start : end - buf_start] += weights
        frame_lo = start // frame_hop
        frame_hi = min(frame_lo + chunk_frames, total_frames)
        frame_w = weights[np.minimum(np.arange(frame_hi - frame_lo) * frame_hop, end - start - 1)]
        frame_weight[frame_lo:frame_hi] += frame_w
        for name, value in outputs.items():
            value = np.asarray(value)
            if value.shape[-1] == chunk:
                acc = wave_acc.get(name)
                if acc is None:
                    acc = np.zeros(value.shape[:-1] + (0,), dtype=np.float64)
                if acc.shape[-1] < width:
                    acc = np.pad(acc, [(0, 0)] * (acc.ndim - 1) + [(0, width - acc.shape[-1])])
                acc[..., start - buf_start : end - buf_start] += value[..., : end - start] * weights
                wave_acc[name] = acc
            elif value.shape[-1] == chunk_frames:
                acc = frame_acc.setdefault(name, np.zeros(value.shape[:-1] + (total_frames,), dtype=np.float64))
                acc[..., frame_lo:frame_hi] += value[..., : frame_hi - frame_lo] * frame_w
            else:
                raise ValueError(
                    f"output {name!r} has last axis {value.shape[-1]}; expected {chunk} samples "
                    f"or {chunk_frames} frames for a chunk of {chunk} samples"
                )
        next_start = starts[index + 1] if index + 1 < len(starts) else total
        flush(next_start)
    result: dict[str, np.ndarray] = {
        name: (acc / np.maximum(frame_weight, 1e-12)).astype(np.float32) for name, acc in frame_acc.items()
    }
    result.update(finished)
    return result


def separate_waveform(
    waveform: np.ndarray,
    separate_chunk: ChunkFn,
    *,
    settings: Any = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    sink: Sink | None = None,
    progress: bool = False,
    description: str = "separating",
) -> dict[str, np.ndarray]:
    """Separate one waveform ``(C, S)`` in crossfaded chunks with the separator's own settings.

    The one separation driver of tfmusic: ``tfmusic separate`` and ``tfmusic evaluate`` both call
    it. ``settings`` (a :class:`~tfmusic.audio.settings.AudioSettings`, or anything :func:`settings_of` reads, such as
    the Separator) defaults to what ``separate_chunk`` carries (a :class:`GraphChunkFn` carries its
    model's), else tfmusic's defaults. Chunks are whole STFT hops, at least ``MIN_CHUNK_SECONDS``
    (shorter audio is zero-padded and cropped back). Returns :func:`separate_in_chunks`' outputs:
    waveforms ``(C', S)`` (streamed to ``sink`` instead when given) and frame curves over
    ``center=True`` frames (``1 + S // hop``).
    """
    s = settings_of(separate_chunk if settings is None else settings)
    if chunk_seconds <= 0 or overlap_seconds < 0:
        raise ValueError(f"need chunk_seconds > 0 and overlap_seconds >= 0, got {chunk_seconds}, {overlap_seconds}")
    if overlap_seconds > chunk_seconds / 2:
        raise ValueError(f"overlap ({overlap_seconds} s) must be at most half of the chunk ({chunk_seconds} s)")
    return separate_in_chunks(
        waveform,
        separate_chunk,
        chunk_samples=int(round(chunk_seconds * s.sample_rate)),
        overlap_samples=int(round(overlap_seconds * s.sample_rate)),
        frame_hop=s.hop_length,
        min_samples=max(s.n_fft, int(round(MIN_CHUNK_SECONDS * s.sample_rate))),
        sink=sink,
        progress=progress,
        description=description,
    )
