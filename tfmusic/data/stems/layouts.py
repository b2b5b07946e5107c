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
from typing import Any

from tfmusic import storage
from tfmusic.audio.io import is_audio_file
from tfmusic.data.stems import taxonomy
from tfmusic.data.stems.track import Track, _join, relative_path

LAYOUTS = ("musdb", "medleydb", "mixing_secrets", "folder")
MIXTURE_NAMES = ("mixture", "mix")


class LayoutError(ValueError):
    """The input folder matches no supported layout (message names the folder)."""
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
