"""Readers for multitrack dataset layouts, all producing the same :class:`Track` record.

Supported layouts (``LAYOUTS``):
  * ``musdb``: MUSDB18-HQ, ``{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav``;
  * ``medleydb``: ``<Track>/<Track>_METADATA.yaml``, ``<Track>_STEMS/``, ``<Track>_RAW/``,
    ``<Track>_MIX.wav`` (metadata may also sit in ``<root>/Metadata/``, audio in ``<root>/Audio/``);
  * ``mixing_secrets``: converted to MedleyDB-style YAML (``origin: Mixing Secrets``), or a plain
    folder of named multitrack files per song mapped by file-name keywords (``01_KickIn.wav``);
  * ``folder``: generic track folders, ``<track>/<instrument>.wav`` with an optional ``mixture.wav``.

Readers only look at names and metadata; audio content is validated by the preprocessing job.
Labels map onto the taxonomy through :mod:`tfmusic.data.stems.taxonomy` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfmusic.audio.io import DEFAULT_SAMPLE_RATE, is_audio_file, read_audio
from tfmusic.data.stems import taxonomy

LAYOUTS = ("musdb", "medleydb", "mixing_secrets", "folder")
MIXTURE_NAMES = ("mixture", "mix")


class LayoutError(ValueError):
    """The input folder matches no supported layout (message names the folder)."""


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

    def load(self, sample_rate: int = DEFAULT_SAMPLE_RATE) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Read the song: ``(mixture (C, S) float32, {instrument: (C, S) float32})``.

        Files are resampled to ``sample_rate``; several files of one instrument are summed; mono
        files are repeated to the widest channel count; shorter files are zero-padded to the
        longest. Without a mixture file the mixture is the sum of the stems.
        """
        raw: dict[str, list[np.ndarray]] = {}
        for inst in self.instruments:
            raw[inst] = [read_audio(p, sample_rate)[0] for p in self.stems[inst]]
        mix = read_audio(self.mixture, sample_rate)[0] if self.mixture else None
        if not raw and mix is None:
            raise ValueError(f"{self.path}: track {self.name!r} has no stems to load")
        return assemble(raw, mix)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored in the preprocessing manifest; inverse: ``Track(**d)``)."""
        return {"name": self.name, "layout": self.layout, "path": self.path, "mixture": self.mixture,
                "stems": {k: list(v) for k, v in self.stems.items()}, "metadata": self.metadata,
                "song_id": self.song_id, "rejected_stems": list(self.rejected_stems),
                "unknown_labels": list(self.unknown_labels), "problems": list(self.problems)}


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


# ------------------------------------------------------------------------------------------
def _audio_files(folder: Path, recursive: bool = False) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and is_audio_file(p) and not p.name.startswith("."))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_audio(folder: Path, stem: str) -> Path | None:
    for ext in (".wav", ".flac", ".aif", ".aiff", ".ogg"):
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _song_id(root: Path, track_dir: Path) -> str:
    try:
        return track_dir.relative_to(root).as_posix()
    except ValueError:
        return track_dir.name


def read_musdb(root: str | Path) -> list[Track]:
    """MUSDB18-HQ: ``{train,test}/<track>/`` with mixture + vocals/drums/bass/other WAVs."""
    root = Path(root)
    tracks = []
    for subset in ("train", "test"):
        if not (root / subset).is_dir():
            continue
        for d in _subdirs(root / subset):
            stems, rejected = {}, []
            for inst in taxonomy.MUSDB_STEMS:
                found = _find_audio(d, inst)
                if found is None:
                    rejected.append({"file": str(d / f"{inst}.wav"), "reason": "missing stem file"})
                else:
                    stems[inst] = [str(found)]
            mix = _find_audio(d, "mixture")
            tracks.append(Track(d.name, "musdb", str(d), str(mix) if mix else None, stems,
                                metadata={"subset": subset}, song_id=_song_id(root, d), rejected_stems=rejected))
    return tracks


def _metadata_file(root: Path, track_dir: Path) -> Path | None:
    for candidate in (track_dir / f"{track_dir.name}_METADATA.yaml", root / "Metadata" / f"{track_dir.name}_METADATA.yaml"):
        if candidate.is_file():
            return candidate
    found = sorted(track_dir.glob("*_METADATA.yaml"))
    return found[0] if found else None


def _track_dirs_with_metadata(root: Path) -> list[tuple[Path, Path | None]]:
    audio_root = root / "Audio" if (root / "Audio").is_dir() else root
    pairs = []
    for d in _subdirs(audio_root):
        if d.name == "Metadata":
            continue
        pairs.append((d, _metadata_file(root, d)))
    return pairs


def read_medleydb_track(root: Path, track_dir: Path, meta_path: Path, unknown_policy: str = "other") -> Track:
    """One MedleyDB-style track from its ``_METADATA.yaml`` (also used for converted Mixing Secrets)."""
    import yaml

    name = track_dir.name
    try:
        meta = yaml.safe_load(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("top level is not a mapping")
    except Exception as err:
        return Track(name, "medleydb", str(track_dir), None, {}, song_id=_song_id(root, track_dir),
                     problems=[f"{meta_path}: unparseable metadata ({err})"])
    origin = str(meta.get("origin", "") or "")
    layout = "mixing_secrets" if "mixing secrets" in origin.lower() else "medleydb"
    stem_dir = track_dir / str(meta.get("stem_dir") or f"{name}_STEMS")
    mix_name = meta.get("mix_filename") or f"{name}_MIX.wav"
    mix_path = track_dir / str(mix_name)
    stems: dict[str, list[str]] = {}
    rejected: list[dict[str, str]] = []
    unknown: list[str] = []
    labels: dict[str, Any] = {}
    for key, stem in sorted((meta.get("stems") or {}).items()):
        if not isinstance(stem, dict) or not stem.get("filename"):
            rejected.append({"file": str(meta_path), "reason": f"stem {key}: no filename in metadata"})
            continue
        path = stem_dir / str(stem["filename"])
        label = stem.get("instrument", "")
        labels[path.name] = label
        inst, was_unknown = taxonomy.map_label(label if label else "", unknown_policy)
        if was_unknown:
            unknown.append(str(label))
        if inst is None:
            rejected.append({"file": str(path), "reason": f"unknown instrument label {label!r}"})
            continue
        if not path.is_file():
            rejected.append({"file": str(path), "reason": "missing stem file"})
            continue
        stems.setdefault(inst, []).append(str(path))
    metadata = {k: meta.get(k) for k in ("artist", "title", "genre", "origin", "has_bleed", "instrumental") if k in meta}
    metadata["labels"] = labels
    metadata["metadata_file"] = str(meta_path)
    raw_dir = track_dir / str(meta.get("raw_dir") or f"{name}_RAW")
    if raw_dir.is_dir():  # raw (pre-mix) recordings are listed, not loaded: targets are the stems
        metadata["raw_dir"] = str(raw_dir)
        metadata["raw_files"] = len(_audio_files(raw_dir))
    problems = []
    mixture = str(mix_path) if mix_path.is_file() else None
    if meta.get("mix_filename") and mixture is None:
        problems.append(f"{mix_path}: mixture named in metadata does not exist")
    return Track(name, layout, str(track_dir), mixture, stems, metadata, song_id=_song_id(root, track_dir),
                 rejected_stems=rejected, unknown_labels=unknown, problems=problems)


def read_medleydb(root: str | Path, unknown_policy: str = "other") -> list[Track]:
    """MedleyDB (or MedleyDB-style converted Mixing Secrets) tracks under ``root``."""
    root = Path(root)
    tracks = []
    for d, meta in _track_dirs_with_metadata(root):
        if meta is None:
            tracks.append(Track(d.name, "medleydb", str(d), None, {}, song_id=_song_id(root, d),
                                problems=[f"{d}: no {d.name}_METADATA.yaml"]))
        else:
            tracks.append(read_medleydb_track(root, d, meta, unknown_policy))
    return tracks


def _is_mixture_name(path: Path) -> bool:
    tokens = taxonomy.filename_tokens(path.name)
    return path.stem.lower() in MIXTURE_NAMES or (bool(tokens) and tokens[-1] in ("mix", "mixture") and len(tokens) <= 3
                                                  and not any(t in ("bus", "stem") for t in tokens))


def _track_from_named_files(root: Path, track_dir: Path, layout: str, files, is_mixture, instrument_of,
                            unknown_policy: str, metadata: dict) -> Track:
    """A track whose stems are identified by file name: ``instrument_of(file)`` returns
    (instrument or None, the name shown in reports, the reason used when it is unknown)."""
    stems: dict[str, list[str]] = {}
    rejected, unknown, mixture = [], [], None
    for f in files:
        if mixture is None and is_mixture(f):
            mixture = str(f)
            continue
        inst, shown, why = instrument_of(f)
        if inst is None:
            unknown.append(shown)
            if unknown_policy == "reject":
                rejected.append({"file": str(f), "reason": f"{why} {shown!r}"})
                continue
            inst = taxonomy.OTHER
        stems.setdefault(inst, []).append(str(f))
    problems = [] if (stems or rejected) else [f"{track_dir}: no audio files"]
    return Track(track_dir.name, layout, str(track_dir), mixture, stems, metadata,
                 song_id=_song_id(root, track_dir), rejected_stems=rejected, unknown_labels=unknown,
                 problems=problems)


def read_mixing_secrets(root: str | Path, unknown_policy: str = "other") -> list[Track]:
    """Mixing Secrets: MedleyDB-style YAML when present, else plain folders mapped by file-name keywords."""
    root = Path(root)
    tracks = []
    for d, meta in _track_dirs_with_metadata(root):
        if meta is not None:
            tracks.append(read_medleydb_track(root, d, meta, unknown_policy))
            continue
        tracks.append(_track_from_named_files(
            root, d, "mixing_secrets", _audio_files(d, recursive=True), _is_mixture_name,
            lambda f: (taxonomy.instrument_from_filename(f.name), f.name, "no instrument keyword in file name"),
            unknown_policy, {"mapping": "filename keywords"}))
    return tracks


def _folder_instrument(path: Path) -> str | None:
    name = re.sub(r"[_\-\s]*\d+$", "", path.stem)
    return taxonomy.lookup_label(name)


def read_folder(root: str | Path, unknown_policy: str = "other") -> list[Track]:
    """Generic track folders: ``<track>/<instrument>[_N].wav`` (+ optional ``mixture.wav``)."""
    root = Path(root)
    tracks = []
    for d in _subdirs(root):
        tracks.append(_track_from_named_files(
            root, d, "folder", _audio_files(d), lambda f: f.stem.lower() in MIXTURE_NAMES,
            lambda f: (_folder_instrument(f), f.stem, "unknown instrument name"), unknown_policy, {}))
    return tracks


def detect_layout(root: str | Path) -> str:
    """Guess the layout of ``root`` from its folder and file names (raises LayoutError)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a directory")
    for subset in ("train", "test"):
        if (root / subset).is_dir() and any(_find_audio(d, "mixture") or _find_audio(d, "vocals")
                                            for d in _subdirs(root / subset)):
            return "musdb"
    pairs = _track_dirs_with_metadata(root)
    metas = [m for _, m in pairs if m is not None]
    if metas:
        import yaml

        try:
            origin = str((yaml.safe_load(metas[0].read_text()) or {}).get("origin", ""))
        except Exception:
            origin = ""
        return "mixing_secrets" if "mixing secrets" in origin.lower() else "medleydb"
    files = [f for d in _subdirs(root) for f in _audio_files(d)]
    if not files:
        raise LayoutError(f"{root}: no track folders with audio files (looked for MUSDB, MedleyDB, "
                          "Mixing Secrets and track-folder layouts)")
    named = [f for f in files if f.stem.lower() not in MIXTURE_NAMES]
    if named and all(_folder_instrument(f) is not None for f in named):
        return "folder"
    return "mixing_secrets"


READERS = {
    "musdb": lambda root, policy: read_musdb(root),
    "medleydb": read_medleydb,
    "mixing_secrets": read_mixing_secrets,
    "folder": read_folder,
}


def read_tracks(root: str | Path, layout: str = "auto", unknown_policy: str = "other") -> list[Track]:
    """All tracks under ``root`` in ``layout`` (``auto`` detects it), sorted by song id."""
    if unknown_policy not in taxonomy.UNKNOWN_POLICIES:
        raise ValueError(f"unknown-label policy must be one of {taxonomy.UNKNOWN_POLICIES}, got {unknown_policy!r}")
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise LayoutError(f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise LayoutError(f"{root}: not a directory")
    return sorted(READERS[layout](root, unknown_policy), key=lambda t: t.song_id)
