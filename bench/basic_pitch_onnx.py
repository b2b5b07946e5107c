"""basic-pitch (Spotify, ICASSP 2022) as a transcription anchor, run from its ONNX file with onnxruntime.

Why not ``basic_pitch.inference.predict``: basic-pitch 0.4.0 pins TensorFlow < 2.15.1, so the bench
installs its wheel with ``pip install --no-deps basic-pitch==0.4.0`` (the Makefile's
``experiment-pitch`` target) only for the model file it carries, ``basic_pitch/saved_models/
icassp_2022/nmp.onnx``; this module finds that file without importing the package and does the
pre- and post-processing itself, following the wheel's ``inference.py`` / ``note_creation.py``:

- audio: mono, resampled to 22,050 Hz (soxr_hq, as ``librosa.load``), ``30 * 256 / 2`` zeros in
  front, then windows of 43,844 samples (2 s minus one hop) every 43,844 - 30 * 256 samples, the
  last zero-padded; the model gives 172 frames (hop 256, ~86.1 fps) per window of ``note`` and
  ``onset`` ``(frames, 88)`` (A0..C8) and ``contour`` ``(frames, 264)`` probabilities;
- the first and last 15 frames of every window are dropped, the rest concatenated and cut to
  ``floor(samples * 86 / 22050)`` frames. Frame ``f`` of window ``i = f // 142`` sits at
  ``(256 f - 188 i) / 22050`` s: windows advance 36,164 samples, not 142 x 256 = 36,352
  (basic-pitch's ``model_frames_to_time`` corrects the same drift with a fitted constant; the two
  agree within ~8 ms, a third of one of our frames);
- notes (:func:`decode_notes`): onsets are the ``onset`` output raised to the rescaled positive
  frame-to-frame rise of ``note`` where that is larger, peaks over time at or above
  ``onset_threshold`` (0.5) start notes, latest first; a note runs while ``note`` stays at or
  above ``frame_threshold`` (0.3), tolerating 11 frames below, must last more than 11 frames
  (basic-pitch's default 127.7 ms) and clears its key and both neighbours; then the "melodia"
  pass turns the strongest leftover activation into a note, extending both ways, until none is
  above ``frame_threshold``. Pitch bends and MIDI writing are left out (not scored).

Frame-level multi-pitch: ``note >= frame_threshold``, read at our frame times (linear interpolation
of the probabilities). Both go through :mod:`tfmusic.evaluation.transcription`, like ours.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 22050
HOP = 256
WINDOW_SAMPLES = 2 * SAMPLE_RATE - HOP  # 43,844
WINDOW_FRAMES = 172
OVERLAP_FRAMES = 30
STEP_SAMPLES = WINDOW_SAMPLES - OVERLAP_FRAMES * HOP  # 36,164
KEPT_FRAMES = WINDOW_FRAMES - OVERLAP_FRAMES  # 142
FPS = SAMPLE_RATE // HOP  # 86, basic-pitch's ANNOTATIONS_FPS
DRIFT = KEPT_FRAMES * HOP - STEP_SAMPLES  # 188 samples per window
MODEL_FILE = ("saved_models", "icassp_2022", "nmp.onnx")
INPUT, OUTPUTS = "serving_default_input_2:0", {"note": "StatefulPartitionedCall:1",
                                                "onset": "StatefulPartitionedCall:2",
                                                "contour": "StatefulPartitionedCall:0"}
ONSET_THRESHOLD, FRAME_THRESHOLD, MIN_NOTE_FRAMES, ENERGY_TOLERANCE = 0.5, 0.3, 11, 11
INSTALL = "pip install --no-deps basic-pitch==0.4.0  (what `make experiment-pitch` runs)"


def model_path() -> Path:
    """``nmp.onnx`` of the installed basic-pitch wheel, found without importing the package (whose
    ``__init__`` probes TensorFlow, CoreML and TFLite)."""
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"basic-pitch is not installed: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*MODEL_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed basic-pitch (expected 0.4.0: {INSTALL})")
    return path


def frame_times(frames: int) -> np.ndarray:
    """Seconds of each unwrapped output frame (module docstring): window ``f // 142`` started
    ``DRIFT`` samples per window earlier than 142 whole hops would put it."""
    f = np.arange(frames)
    return (HOP * f - DRIFT * (f // KEPT_FRAMES)) / SAMPLE_RATE


class BasicPitch:
    """The ONNX model in an onnxruntime session: 22,050 Hz mono audio -> frame activations."""

    def __init__(self, path: str | Path | None = None, threads: int | None = None, batch: int = 4) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.path = Path(path) if path else model_path()
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.batch = int(batch)

    def activations(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """``{"note", "onset": (frames, 88), "contour": (frames, 264), "times": (frames,)}`` for mono
        22,050 Hz ``audio`` (module docstring)."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        padded = np.concatenate([np.zeros(OVERLAP_FRAMES * HOP // 2, np.float32), audio])
        starts = range(0, len(padded), STEP_SAMPLES)
        windows = np.zeros((len(starts), WINDOW_SAMPLES, 1), np.float32)
        for row, start in enumerate(starts):
            piece = padded[start:start + WINDOW_SAMPLES]
            windows[row, :len(piece), 0] = piece
        names = list(OUTPUTS)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for first in range(0, len(windows), self.batch):
            outs = self.session.run([OUTPUTS[n] for n in names], {INPUT: windows[first:first + self.batch]})
            for name, out in zip(names, outs):
                parts[name].append(out)
        half = OVERLAP_FRAMES // 2
        frames = int(np.floor(len(audio) * FPS / SAMPLE_RATE))
        result = {name: np.concatenate(parts[name])[:, half:-half].reshape(-1, parts[name][0].shape[-1])[:frames]
                  for name in names}
        result["times"] = frame_times(frames)
        return result


def inferred_onsets(onset: np.ndarray, note: np.ndarray, lags: int = 2) -> np.ndarray:
    """``onset`` raised to the rise of ``note`` over the last ``lags`` frames (the smaller of the
    rises), rescaled to the onsets' maximum; the first ``lags`` frames get no rise."""
    rises = [note - np.concatenate([np.zeros((lag, note.shape[1])), note[:-lag]]) for lag in range(1, lags + 1)]
    rise = np.clip(np.min(rises, axis=0), 0.0, None)
    rise[:lags] = 0.0
    peak = rise.max()
    if peak > 0:
        rise = rise * (onset.max() / peak)
    return np.maximum(onset, rise)


def _run_end(energy: np.ndarray, key: int, start: int, step: int, threshold: float, tolerance: int,
             clear: bool) -> int:
    """Walk from ``start`` in direction ``step`` while ``energy[:, key]`` stays >= ``threshold`` (up to
    ``tolerance`` frames below in a row); return the last frame at or above it. ``clear`` zeroes the
    key and its neighbours on the way (the melodia pass)."""
    n, below, i = energy.shape[0], 0, start
    while 0 < i < n - 1 and below < tolerance:
        below = below + 1 if energy[i, key] < threshold else 0
        if clear:
            energy[i, max(key - 1, 0):key + 2] = 0.0
        i += step
    return i - step * (below + 1)


def decode_notes(note: np.ndarray, onset: np.ndarray, onset_threshold: float = ONSET_THRESHOLD,
                 frame_threshold: float = FRAME_THRESHOLD, min_frames: int = MIN_NOTE_FRAMES,
                 tolerance: int = ENERGY_TOLERANCE, melodia: bool = True) -> list[tuple[int, int, int]]:
    """Frame activations -> ``[(first frame, end frame, key)]`` (module docstring; keys 0..87 = A0..C8)."""
    from scipy.signal import argrelmax

    n = note.shape[0]
    onsets = inferred_onsets(onset, note)
    peak_t, peak_k = argrelmax(onsets, axis=0)
    strong = onsets[peak_t, peak_k] >= onset_threshold
    order = np.lexsort((peak_k[strong], peak_t[strong]))[::-1]  # latest first
    energy = note.astype(np.float64).copy()
    notes = []
    for t, k in zip(peak_t[strong][order], peak_k[strong][order]):
        if t >= n - 1:
            continue
        end = _run_end(energy, int(k), int(t) + 1, 1, frame_threshold, tolerance, clear=False) + 1
        if end - t <= min_frames:
            continue
        energy[t:end, max(k - 1, 0):k + 2] = 0.0
        notes.append((int(t), int(end), int(k)))
    while melodia and energy.max() > frame_threshold:
        t, k = np.unravel_index(int(np.argmax(energy)), energy.shape)
        energy[t, k] = 0.0
        last = _run_end(energy, int(k), int(t) + 1, 1, frame_threshold, tolerance, clear=True)
        first = _run_end(energy, int(k), int(t) - 1, -1, frame_threshold, tolerance, clear=True)
        if last - first > min_frames:
            notes.append((int(first), int(last), int(k)))
    return sorted(notes)


def transcribe(audio: np.ndarray, sample_rate: int, model: BasicPitch, frame_times_out: np.ndarray,
               frame_threshold: float = FRAME_THRESHOLD) -> dict[str, Any]:
    """Mono or ``(channels, samples)`` audio -> ``{"roll": (88, len(frame_times_out)) bool at those
    times, "notes": [(start s, end s, MIDI pitch)]}`` (what :mod:`tfmusic.evaluation.transcription` scores)."""
    from tfmusic.audio.io import resample
    from tfmusic.data.stems.pitch import LOW_PITCH, NUM_KEYS

    mono = np.asarray(audio, np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if sample_rate != SAMPLE_RATE:
        mono = resample(mono, sample_rate, SAMPLE_RATE)
    act = model.activations(mono)
    times = act["times"]
    probs = np.stack([np.interp(frame_times_out, times, act["note"][:, k], left=0.0, right=0.0)
                      for k in range(NUM_KEYS)])
    notes = [(float(times[a]), float(times[min(b, len(times) - 1)]), LOW_PITCH + k)
             for a, b, k in decode_notes(act["note"], act["onset"], frame_threshold=frame_threshold)]
    return {"roll": probs >= frame_threshold, "notes": notes, "frames": len(times)}
