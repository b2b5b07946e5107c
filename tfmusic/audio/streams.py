"""Separating song files with bounded memory: lazy input windows, streaming stem writers, output names.

The library side of ``tfmusic separate`` (the CLI only parses flags): :func:`separate_file` walks a
song chunk by chunk (a 44.1 kHz file is never read whole), streams each stem to its WAV file as
the chunk driver finishes it, and writes the activity curves. :func:`output_names` gives every
input its own output folder, by parent folder when base names collide (MUSDB's
``*/mixture.wav``), and :func:`existing_outputs` lets callers refuse to overwrite earlier results.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tfmusic.audio.io import AudioFileError, audio_info, read_audio
from tfmusic.audio.settings import AudioSettings

ChunkFn = Callable[[np.ndarray], dict]


class StemWriters:
    """One streaming WAV writer per output, opened on first write (bounded memory for long songs).

    Each stem is written as ``.<name>.partial.wav`` and renamed into place only when the whole song
    is done: a run that fails half way (a server gone past its deadline, non-finite output) leaves
    no half stems, and an earlier run's stems stay as they were. With ``out_rate`` (the song's own
    rate) the model-rate segments are resampled on the way (one streaming soxr resampler per stem,
    so chunk edges leave no seam) and each stem is cut or padded to ``out_frames``, the song's length.
    """

    def __init__(self, folder: Path, channels: int, subtype: str, sample_rate: int,
                 out_rate: int | None = None, out_frames: int | None = None) -> None:
        self.folder, self.channels, self.subtype, self.sample_rate = folder, channels, subtype, sample_rate
        self.out_rate = out_rate or sample_rate
        self.out_frames = out_frames
        self.files: dict = {}
        self.resamplers: dict = {}

    def __call__(self, name: str, segment: np.ndarray) -> None:
        import soundfile as sf

        path = self.folder / f".{name}.partial.wav"
        if name not in self.files:
            try:
                self.files[name] = sf.SoundFile(str(path), "w", self.out_rate, self.channels, self.subtype)
            except Exception as err:
                raise AudioFileError(path, f"cannot write audio ({err})") from err
            if self.out_rate != self.sample_rate:
                import soxr

                self.resamplers[name] = soxr.ResampleStream(self.sample_rate, self.out_rate, self.channels,
                                                            dtype="float32", quality="HQ")
        if not np.all(np.isfinite(segment)):
            raise AudioFileError(path, "refusing to write NaN/Inf samples (model produced non-finite output)")
        frames = np.ascontiguousarray(segment.T, dtype=np.float32)
        if name in self.resamplers:
            frames = self.resamplers[name].resample_chunk(frames)
        self._write(name, frames)

    def _write(self, name: str, frames: np.ndarray) -> None:
        handle = self.files[name]
        if self.out_frames is not None:
            frames = frames[: max(0, self.out_frames - handle.tell())]
        handle.write(frames)

    def close(self, keep: bool = True) -> list[Path]:
        """Close every stem (flushing its resampler, padding it to the song's length); ``keep``: rename
        them into place (returned), else delete them."""
        paths = []
        for name, handle in self.files.items():
            if keep and name in self.resamplers:
                self._write(name, self.resamplers[name].resample_chunk(
                    np.zeros((0, self.channels), np.float32), last=True))
            if keep and self.out_frames is not None and handle.tell() < self.out_frames:
                handle.write(np.zeros((self.out_frames - handle.tell(), self.channels), np.float32))
            handle.close()
            partial = self.folder / f".{name}.partial.wav"
            if keep:
                partial.replace(self.folder / f"{name}.wav")
                paths.append(self.folder / f"{name}.wav")
            else:
                partial.unlink(missing_ok=True)
        self.files = {}
        return paths


class FileWindow:
    """``(channels, samples)`` view of an audio file at the model's rate that reads only the slice asked for.

    Lets the chunk driver walk a long song without holding it in memory.
    """

    def __init__(self, path: str, channels: int, frames: int, sample_rate: int) -> None:
        import soundfile as sf

        self.path, self.sample_rate = path, sample_rate
        self.shape = (channels, frames)
        self._file = sf.SoundFile(path)

    def __getitem__(self, index) -> np.ndarray:
        _, window = index
        start, stop, _ = window.indices(self.shape[1])
        self._file.seek(start)
        data = self._file.read(stop - start, dtype="float32", always_2d=True)
        if not np.all(np.isfinite(data)):
            raise AudioFileError(self.path, f"NaN/Inf samples between {start / self.sample_rate:.1f} s and "
                                            f"{stop / self.sample_rate:.1f} s")
        return np.ascontiguousarray(data.T)

    def close(self) -> None:
        self._file.close()


def open_song(path: str, sample_rate: int):
    """A file at ``sample_rate`` is read lazily chunk by chunk; other rates are read whole and resampled."""
    info = audio_info(path)
    if info.channels > 2:
        raise AudioFileError(path, f"{info.channels} channels; only mono and stereo are supported")
    if info.sample_rate == sample_rate:
        try:
            return FileWindow(path, info.channels, info.frames, sample_rate)
        except Exception as err:
            raise AudioFileError(path, f"unreadable audio ({err})") from err
    audio, _ = read_audio(path, sample_rate)
    return audio


def write_activity(folder: Path, curves: dict[str, np.ndarray], settings: AudioSettings, plot: bool,
                   title: str) -> list[Path]:
    """activity.csv (time + one column per target) and, with ``plot``, activity.png."""
    if not curves:
        return []
    names = sorted(curves)
    frames = len(curves[names[0]])
    times = np.arange(frames) * settings.hop_length / settings.sample_rate
    table = np.column_stack([times] + [curves[n] for n in names])
    csv_path = folder / "activity.csv"
    np.savetxt(csv_path, table, delimiter=",", fmt="%.4f", header="time_s," + ",".join(names), comments="")
    written = [csv_path]
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(names), 1, figsize=(12, 1.6 * len(names) + 0.8), sharex=True, squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            ax.fill_between(times, curves[name], step="mid", alpha=0.4)
            ax.plot(times, curves[name], linewidth=0.8)
            ax.set_ylim(0, 1.02)
            ax.set_ylabel(name, rotation=0, ha="right", va="center")
        axes[-1, 0].set_xlabel("time (s)")
        fig.suptitle(f"instrument activity: {title}")
        fig.tight_layout()
        png_path = folder / "activity.png"
        fig.savefig(png_path, dpi=100)
        plt.close(fig)
        written.append(png_path)
    return written


def output_names(inputs: Sequence[str]) -> list[str]:
    """One output folder name per input: the file's base name, or, where base names collide, the
    parent folders joined in front (``SongA/mixture.wav`` -> ``SongA``, then ``album__SongA`` ...)."""
    paths = [Path(os.path.abspath(p)) for p in inputs]
    depth = [0] * len(paths)

    def name(i: int) -> str:
        p = paths[i]
        if depth[i] == 0:
            return p.stem
        parents = list(p.parents)[:depth[i]][::-1]
        return "__".join(q.name or "root" for q in parents)

    while True:
        names = [name(i) for i in range(len(paths))]
        counts = Counter(names)
        clashing = [i for i, n in enumerate(names) if counts[n] > 1]
        if not clashing:
            return names
        grown = False
        for i in clashing:
            if depth[i] < len(paths[i].parents):
                depth[i] += 1
                grown = True
        if not grown:  # the same file given twice
            dup = sorted({names[i] for i in clashing})
            raise ValueError(f"the same input is given more than once: {', '.join(dup)}")


def existing_outputs(out_root: Path, names: Sequence[str], targets: Sequence[str]) -> list[Path]:
    """Stem files an earlier run left where this run would write."""
    return [out_root / n / f"{t}.wav" for n in names for t in targets if (out_root / n / f"{t}.wav").exists()]


def separate_file(path: str, chunk_fn: ChunkFn, folder: Path, settings: AudioSettings, *, chunk_seconds: float,
                  overlap_seconds: float, subtype: str = "FLOAT", plot: bool = False,
                  progress: bool = False, curves_out: dict | None = None,
                  song_rate: bool = True) -> tuple[list[Path], float, dict[str, np.ndarray]]:
    """Separate one song file into ``folder`` (stems + activity); returns (written files, seconds, curves).
    ``curves_out``, if given, receives every frame output (e.g. ``<target>_pitch`` for transcription).
    ``song_rate``: stems at the song's own rate and length (else at the model's rate)."""
    from tfmusic.audio.chunking import separate_waveform

    audio = open_song(path, settings.sample_rate)
    channels, samples = audio.shape
    folder.mkdir(parents=True, exist_ok=True)
    info = audio_info(path) if song_rate else None
    writers = StemWriters(folder, channels, subtype, settings.sample_rate,
                          out_rate=info.sample_rate if info else None, out_frames=info.frames if info else None)
    done = False
    try:
        curves = separate_waveform(audio, chunk_fn, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                                   sink=writers, progress=progress, description=Path(path).name)
        done = True
    finally:
        written = writers.close(keep=done)
        if isinstance(audio, FileWindow):
            audio.close()
    if curves_out is not None:
        curves_out.update(curves)
    activity = {k[: -len("_activity")]: v for k, v in curves.items() if k.endswith("_activity")}
    written += write_activity(folder, activity, settings, plot, Path(path).name)
    return written, samples / settings.sample_rate, activity
