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

The root may be local or on any Beam filesystem (``gs://bucket/medleydb``): the tree is listed
once (:func:`tfmusic.storage.glob` of ``root/**``, one listing on object storage, which has no
directories: a folder is any prefix that holds a file, locally too) and every question about folders and files
is answered from that listing, so a local and a remote copy of a dataset read the same. Names
starting with ``.`` (staging folders, temp files) are ignored at any depth. Metadata YAML is read
through :mod:`tfmusic.storage`. Track paths are full paths (``root`` joined with the relative
name); :meth:`Track.relative_to` / :meth:`Track.resolved` convert to and from paths relative to
the root, which is how reports store them. Messages about the tree name paths relative to the root.

Why one module: the four layout readers share the Track type, the one tree listing and the
file-classification helpers, and are compared side by side when a layout is added.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from tfmusic import storage
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


def remote_runner(beam_args) -> str | None:
    """The runner named in ``beam_args`` when its workers are other machines (Dataflow...), else None."""
    from tfmusic.beam_options import flag_value

    runner = flag_value(list(beam_args), "--runner") or ""
    return runner if runner and not any(k in runner.lower() for k in ("direct", "fnapi")) else None


def check_worker_path(path: str, what: str, beam_args) -> None:
    """A local ``path`` is only on this machine: with a remote runner (``--runner=DataflowRunner``...)
    the workers could not read or write it, so fail before the job starts."""
    runner = remote_runner(beam_args)
    if storage.is_local(path) and runner:
        raise ValueError(f"{what} {path}: a local path is not on the {runner} workers; "
                         f"use a gs:// (or other shared filesystem) path")


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


# ------------------------------------------------------------------------------------------
class Listing:
    """Every (non-hidden) file under a dataset root, listed once; folders are derived from file names.

    All names are ``/``-separated and relative to the root (``""`` is the root itself).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = storage.check_path(root, what="input")
        local = storage.is_local(self.root)
        if local and not os.path.isdir(self.root):
            raise LayoutError(f"{self.root}: not a directory")
        names = []
        if local:  # os.walk: no glob metacharacters to trip over in local folder names
            for folder, dirs, files in os.walk(self.root, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                base = os.path.relpath(folder, self.root).replace(os.sep, "/")
                names.extend(f if base == "." else f"{base}/{f}" for f in files if not f.startswith("."))
        else:  # one listing of every object under the prefix
            for p in storage.glob(_join(self.root, "**")):
                rel = relative_path(p, self.root)
                if rel != p and not any(part.startswith(".") for part in rel.split("/")):
                    names.append(rel)
        if not local and not names:
            raise LayoutError(f"{self.root}: not a directory (no objects under it)")
        self.files = sorted(names)
        self._file_set = set(self.files)
        self._dirs: dict[str, set[str]] = {"": set()}
        self._dir_files: dict[str, list[str]] = {}
        for f in self.files:
            parent, _, _ = f.rpartition("/")
            self._dir_files.setdefault(parent, []).append(f)
            parts = f.split("/")[:-1]
            for i in range(len(parts)):
                above = "/".join(parts[:i])
                self._dirs.setdefault(above, set()).add(parts[i])
                self._dirs.setdefault("/".join(parts[:i + 1]), set())

    def path(self, rel: str) -> str:
        """The full path of a relative name."""
        return _join(self.root, rel)

    def is_dir(self, rel: str) -> bool:
        return rel in self._dirs

    def is_file(self, rel: str) -> bool:
        return rel in self._file_set

    def subdirs(self, rel: str) -> list[str]:
        """Relative names of the folders directly inside ``rel``, sorted."""
        return [_child(rel, name) for name in sorted(self._dirs.get(rel, ()))]

    def files_in(self, rel: str, recursive: bool = False) -> list[str]:
        """Relative names of the files inside ``rel`` (directly, or at any depth), sorted."""
        if not recursive:
            return list(self._dir_files.get(rel, []))
        prefix = rel + "/" if rel else ""
        return [f for f in self.files if f.startswith(prefix)]


def _child(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _name(rel: str) -> str:
    return rel.rsplit("/", 1)[-1]


def _stem(rel: str) -> str:
    return os.path.splitext(_name(rel))[0]


def _audio_files(tree: Listing, folder: str, recursive: bool = False) -> list[str]:
    return [f for f in tree.files_in(folder, recursive) if is_audio_file(f)]


def _find_audio(tree: Listing, folder: str, stem: str) -> str | None:
    for ext in (".wav", ".flac", ".aif", ".aiff", ".ogg"):
        candidate = _child(folder, f"{stem}{ext}")
        if tree.is_file(candidate):
            return candidate
    return None


def _listing(root: str | os.PathLike, tree: Listing | None) -> Listing:
    return tree if tree is not None else Listing(root)


def read_musdb(root: str | os.PathLike, tree: Listing | None = None) -> list[Track]:
    """MUSDB18-HQ: ``{train,test}/<track>/`` with mixture + vocals/drums/bass/other WAVs."""
    tree = _listing(root, tree)
    tracks = []
    for subset in ("train", "test"):
        if not tree.is_dir(subset):
            continue
        for d in tree.subdirs(subset):
            stems, rejected = {}, []
            for inst in taxonomy.MUSDB_STEMS:
                found = _find_audio(tree, d, inst)
                if found is None:
                    rejected.append({"file": tree.path(_child(d, f"{inst}.wav")), "reason": "missing stem file"})
                else:
                    stems[inst] = [tree.path(found)]
            mix = _find_audio(tree, d, "mixture")
            tracks.append(Track(_name(d), "musdb", tree.path(d), tree.path(mix) if mix else None, stems,
                                metadata={"subset": subset}, song_id=d, rejected_stems=rejected))
    return tracks


def _metadata_file(tree: Listing, track_dir: str) -> str | None:
    name = _name(track_dir)
    for candidate in (_child(track_dir, f"{name}_METADATA.yaml"), f"Metadata/{name}_METADATA.yaml"):
        if tree.is_file(candidate):
            return candidate
    found = [f for f in tree.files_in(track_dir) if f.endswith("_METADATA.yaml")]
    return found[0] if found else None


def _track_dirs_with_metadata(tree: Listing) -> list[tuple[str, str | None]]:
    audio_root = "Audio" if tree.is_dir("Audio") else ""
    return [(d, _metadata_file(tree, d)) for d in tree.subdirs(audio_root) if _name(d) != "Metadata"]


def read_medleydb_track(tree: Listing, track_dir: str, meta_path: str, unknown_policy: str = "other") -> Track:
    """One MedleyDB-style track from its ``_METADATA.yaml`` (also used for converted Mixing Secrets).

    ``track_dir`` and ``meta_path`` are names relative to the root of ``tree``.
    """
    import yaml

    name = _name(track_dir)
    try:
        meta = yaml.safe_load(storage.read_text(tree.path(meta_path)))
        if not isinstance(meta, dict):
            raise ValueError("top level is not a mapping")
    except Exception as err:
        return Track(name, "medleydb", tree.path(track_dir), None, {}, song_id=track_dir,
                     problems=[f"{meta_path}: unparseable metadata ({err})"])
    origin = str(meta.get("origin", "") or "")
    layout = "mixing_secrets" if "mixing secrets" in origin.lower() else "medleydb"
    stem_dir = _child(track_dir, str(meta.get("stem_dir") or f"{name}_STEMS"))
    mix_name = meta.get("mix_filename") or f"{name}_MIX.wav"
    mix_path = _child(track_dir, str(mix_name))
    stems: dict[str, list[str]] = {}
    rejected: list[dict[str, str]] = []
    unknown: list[str] = []
    labels: dict[str, Any] = {}
    midi_tracks: dict[str, Any] = {}  # stem file name -> its track in the song's MIDI (synthesized songs)
    for key, stem in sorted((meta.get("stems") or {}).items()):
        if not isinstance(stem, dict) or not stem.get("filename"):
            rejected.append({"file": tree.path(meta_path), "reason": f"stem {key}: no filename in metadata"})
            continue
        path = _child(stem_dir, str(stem["filename"]))
        label = stem.get("instrument", "")
        labels[_name(path)] = label
        inst, was_unknown = taxonomy.map_label(label if label else "", unknown_policy)
        if was_unknown:
            unknown.append(str(label))
        if inst is None:
            rejected.append({"file": tree.path(path), "reason": f"unknown instrument label {label!r}"})
            continue
        if not tree.is_file(path):
            rejected.append({"file": tree.path(path), "reason": "missing stem file"})
            continue
        stems.setdefault(inst, []).append(tree.path(path))
        midi_tracks[_name(path)] = stem.get("midi_track")
    metadata = {k: meta.get(k) for k in ("artist", "title", "genre", "origin", "has_bleed", "instrumental") if k in meta}
    metadata["labels"] = labels
    midi_name = meta.get("midi_filename")
    if midi_name and tree.is_file(_child(track_dir, str(midi_name))):  # pitch labels (tfmusic.data.stems.pitch)
        metadata["midi_file"] = str(midi_name)  # relative to the track folder
        metadata["midi_tracks"] = midi_tracks
    metadata["metadata_file"] = meta_path  # relative to the dataset root
    raw_dir = _child(track_dir, str(meta.get("raw_dir") or f"{name}_RAW"))
    if tree.is_dir(raw_dir):  # raw (pre-mix) recordings are listed, not loaded: targets are the stems
        metadata["raw_dir"] = raw_dir
        metadata["raw_files"] = len(_audio_files(tree, raw_dir))
    problems = []
    mixture = tree.path(mix_path) if tree.is_file(mix_path) else None
    if meta.get("mix_filename") and mixture is None:
        problems.append(f"{mix_path}: mixture named in metadata does not exist")
    return Track(name, layout, tree.path(track_dir), mixture, stems, metadata, song_id=track_dir,
                 rejected_stems=rejected, unknown_labels=unknown, problems=problems)


def read_medleydb(root: str | os.PathLike, unknown_policy: str = "other", tree: Listing | None = None) -> list[Track]:
    """MedleyDB (or MedleyDB-style converted Mixing Secrets) tracks under ``root``."""
    tree = _listing(root, tree)
    tracks = []
    for d, meta in _track_dirs_with_metadata(tree):
        if meta is None:
            tracks.append(Track(_name(d), "medleydb", tree.path(d), None, {}, song_id=d,
                                problems=[f"{d}: no {_name(d)}_METADATA.yaml"]))
        else:
            tracks.append(read_medleydb_track(tree, d, meta, unknown_policy))
    return tracks


def _is_mixture_name(rel: str) -> bool:
    name = _name(rel)
    tokens = taxonomy.filename_tokens(name)
    return _stem(rel).lower() in MIXTURE_NAMES or (bool(tokens) and tokens[-1] in ("mix", "mixture") and len(tokens) <= 3
                                                   and not any(t in ("bus", "stem") for t in tokens))


def _track_from_named_files(tree: Listing, track_dir: str, layout: str, files, is_mixture, instrument_of,
                            unknown_policy: str, metadata: dict) -> Track:
    """A track whose stems are identified by file name: ``instrument_of(file)`` returns
    (instrument or None, the name shown in reports, the reason used when it is unknown)."""
    stems: dict[str, list[str]] = {}
    rejected, unknown, mixture = [], [], None
    for f in files:
        if mixture is None and is_mixture(f):
            mixture = tree.path(f)
            continue
        inst, shown, why = instrument_of(f)
        if inst is None:
            unknown.append(shown)
            if unknown_policy == "reject":
                rejected.append({"file": tree.path(f), "reason": f"{why} {shown!r}"})
                continue
            inst = taxonomy.OTHER
        stems.setdefault(inst, []).append(tree.path(f))
    problems = [] if (stems or rejected) else [f"{track_dir}: no audio files"]
    return Track(_name(track_dir), layout, tree.path(track_dir), mixture, stems, metadata,
                 song_id=track_dir, rejected_stems=rejected, unknown_labels=unknown, problems=problems)


def read_mixing_secrets(root: str | os.PathLike, unknown_policy: str = "other",
                        tree: Listing | None = None) -> list[Track]:
    """Mixing Secrets: MedleyDB-style YAML when present, else plain folders mapped by file-name keywords."""
    tree = _listing(root, tree)
    tracks = []
    for d, meta in _track_dirs_with_metadata(tree):
        if meta is not None:
            tracks.append(read_medleydb_track(tree, d, meta, unknown_policy))
            continue
        tracks.append(_track_from_named_files(
            tree, d, "mixing_secrets", _audio_files(tree, d, recursive=True), _is_mixture_name,
            lambda f: (taxonomy.instrument_from_filename(_name(f)), _name(f), "no instrument keyword in file name"),
            unknown_policy, {"mapping": "filename keywords"}))
    return tracks


def _folder_instrument(rel: str) -> str | None:
    name = re.sub(r"[_\-\s]*\d+$", "", _stem(rel))
    return taxonomy.lookup_label(name)


def read_folder(root: str | os.PathLike, unknown_policy: str = "other", tree: Listing | None = None) -> list[Track]:
    """Generic track folders: ``<track>/<instrument>[_N].wav`` (+ optional ``mixture.wav``)."""
    tree = _listing(root, tree)
    tracks = []
    for d in tree.subdirs(""):
        tracks.append(_track_from_named_files(
            tree, d, "folder", _audio_files(tree, d), lambda f: _stem(f).lower() in MIXTURE_NAMES,
            lambda f: (_folder_instrument(f), _stem(f), "unknown instrument name"), unknown_policy, {}))
    return tracks


def detect_layout(root: str | os.PathLike, tree: Listing | None = None) -> str:
    """Guess the layout of ``root`` from its folder and file names (raises LayoutError)."""
    tree = _listing(root, tree)
    for subset in ("train", "test"):
        if tree.is_dir(subset) and any(_find_audio(tree, d, "mixture") or _find_audio(tree, d, "vocals")
                                       for d in tree.subdirs(subset)):
            return "musdb"
    metas = [m for _, m in _track_dirs_with_metadata(tree) if m is not None]
    if metas:
        import yaml

        try:
            origin = str((yaml.safe_load(storage.read_text(tree.path(metas[0]))) or {}).get("origin", ""))
        except Exception:
            origin = ""
        return "mixing_secrets" if "mixing secrets" in origin.lower() else "medleydb"
    files = [f for d in tree.subdirs("") for f in _audio_files(tree, d)]
    if not files:
        raise LayoutError(f"{tree.root}: no track folders with audio files (looked for MUSDB, MedleyDB, "
                          "Mixing Secrets and track-folder layouts)")
    named = [f for f in files if _stem(f).lower() not in MIXTURE_NAMES]
    if named and all(_folder_instrument(f) is not None for f in named):
        return "folder"
    return "mixing_secrets"


READERS = {
    "musdb": lambda root, policy, tree=None: read_musdb(root, tree),
    "medleydb": read_medleydb,
    "mixing_secrets": read_mixing_secrets,
    "folder": read_folder,
}


def read_tracks(root: str | os.PathLike, layout: str = "auto", unknown_policy: str = "other") -> list[Track]:
    """All tracks under ``root`` (local or ``gs://``...) in ``layout`` (``auto`` detects it), sorted by song id."""
    if unknown_policy not in taxonomy.UNKNOWN_POLICIES:
        raise ValueError(f"unknown-label policy must be one of {taxonomy.UNKNOWN_POLICIES}, got {unknown_policy!r}")
    if layout != "auto" and layout not in READERS:
        raise LayoutError(f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
    tree = Listing(root)
    if layout == "auto":
        layout = detect_layout(root, tree)
    return sorted(READERS[layout](root, unknown_policy, tree), key=lambda t: t.song_id)
