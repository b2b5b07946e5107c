"""One multitrack song as a layout-independent record, and how its audio is read and aligned.

:class:`Track` is what every layout reader (:mod:`tfmusic.data.stems.layouts`) produces and what
preprocessing, synthesis and evaluation consume; its paths are full paths, stored relative to the
dataset root in manifests (:meth:`Track.relative_to` / :meth:`Track.resolved`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from tfmusic import storage
from tfmusic.audio.io import DEFAULT_SAMPLE_RATE, read_audio
from tfmusic.data.stems import taxonomy

__all__ = ["Track", "assemble", "relative_path", "resolve_path"]


@dataclass
class Track:
    """One song of a multitrack dataset, independent of the layout it came from.

    ``stems`` maps taxonomy instrument -> list of files (summed on load). ``rejected_stems`` holds
    files the reader already refused (missing file, unknown label under the reject policy) and
    ``problems`` track-level problems (e.g. unparseable metadata); both are reported by preprocess.
    """

    name: str
    layout: str
    path: str
    mixture: str | None
    stems: dict[str, list[str]]
    metadata: dict[str, Any] = field(default_factory=dict)
    song_id: str = ""
    rejected_stems: list[dict[str, str]] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.song_id:
            self.song_id = self.name

    @property
    def instruments(self) -> list[str]:
        return [inst for inst in taxonomy.INSTRUMENTS if self.stems.get(inst)]

    def files(self) -> list[str]:
        out = [self.mixture] if self.mixture else []
        for inst in self.instruments:
            out.extend(self.stems[inst])
        return out

    def load(self, sample_rate: int = DEFAULT_SAMPLE_RATE,
             instruments: Sequence[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Read the song: ``(mixture (C, S) float32, {instrument: (C, S) float32})``.

        Files are resampled to ``sample_rate``; several files of one instrument are summed; mono
        files are repeated to the widest channel count; shorter files are zero-padded to the
        longest. Without a mixture file the mixture is the sum of the stems. ``instruments``: read
        only these stems (evaluation of a long song needs the mixture and its targets, not all seven);
        all of them when the song has no mixture file.
        """
        wanted = self.instruments if instruments is None or not self.mixture else [
            i for i in self.instruments if i in set(instruments)]
        raw: dict[str, list[np.ndarray]] = {}
        for inst in wanted:
            raw[inst] = [read_audio(p, sample_rate)[0] for p in self.stems[inst]]
        mix = read_audio(self.mixture, sample_rate)[0] if self.mixture else None
        if not raw and mix is None:
            raise ValueError(f"{self.path}: track {self.name!r} has no stems to load")
        return assemble(raw, mix)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (inverse: ``Track(**d)``)."""
        return {"name": self.name, "layout": self.layout, "path": self.path, "mixture": self.mixture,
                "stems": {k: list(v) for k, v in self.stems.items()}, "metadata": self.metadata,
                "song_id": self.song_id, "rejected_stems": [dict(r) for r in self.rejected_stems],
                "unknown_labels": list(self.unknown_labels), "problems": list(self.problems)}

    def _map_paths(self, fn: Callable[[str], str]) -> dict[str, Any]:
        d = self.to_dict()
        d["path"] = fn(d["path"])
        d["mixture"] = fn(d["mixture"]) if d["mixture"] else None
        d["stems"] = {k: [fn(f) for f in v] for k, v in d["stems"].items()}
        d["rejected_stems"] = [{**r, "file": fn(r["file"])} for r in d["rejected_stems"]]
        return d

    def relative_to(self, root: str | os.PathLike) -> dict[str, Any]:
        """:meth:`to_dict` with every file path relative to the dataset ``root`` (what manifests store:
        the same for a local and a ``gs://`` copy of the dataset)."""
        return self._map_paths(lambda p: relative_path(p, root))

    def resolved(self, root: str | os.PathLike) -> "Track":
        """The track with paths relative to ``root`` made full again (absolute paths stay as they are)."""
        return Track(**self._map_paths(lambda p: resolve_path(p, root)))


def relative_path(path: str, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` as a ``/``-separated name; unchanged when it is not under ``root``."""
    root = os.fspath(root)
    if storage.is_local(root) and storage.is_local(path):
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        return path if rel == ".." or rel.startswith(".." + os.sep) else rel.replace(os.sep, "/")
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def resolve_path(path: str, root: str | os.PathLike) -> str:
    """Inverse of :func:`relative_path`: a relative name joined onto ``root``; full paths unchanged."""
    if storage.scheme(path) or os.path.isabs(path):
        return path
    return _join(os.fspath(root), path)


def _join(root: str, rel: str) -> str:
    if not rel or rel == ".":
        return root
    return storage.join(root, *rel.split("/"))


def assemble(raw: dict[str, list[np.ndarray]], mix: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sum each instrument's files and align everything to one ``(C, S)`` shape.

    Mono arrays are repeated to the widest channel count, shorter ones zero-padded to the longest;
    without ``mix`` the mixture is the sum of the stems.
    """
    arrays = [a for items in raw.values() for a in items] + ([mix] if mix is not None else [])
    channels = max(a.shape[0] for a in arrays)
    length = max(a.shape[1] for a in arrays)

    def fit(a: np.ndarray) -> np.ndarray:
        if a.shape[0] != channels:
            a = np.repeat(a[:1], channels, axis=0)
        if a.shape[1] < length:
            a = np.pad(a, ((0, 0), (0, length - a.shape[1])))
        return a

    def total(items: list[np.ndarray]) -> np.ndarray:
        """Sum in float32, in place, left to right (no stacked copy; a single array is used as is)."""
        out = fit(items[0]).astype(np.float32, copy=len(items) > 1)
        for a in items[1:]:
            out += fit(a)
        return out

    stems = {inst: total(items) for inst, items in raw.items() if items}
    mix = total(list(stems.values())) if mix is None else fit(mix).astype(np.float32, copy=False)
    return mix, stems
