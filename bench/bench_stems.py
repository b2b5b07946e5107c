"""Multitrack data layer speed: synthesis, activity labels, preprocessing and the training tf.data pipeline.

Rows (both sides measured here, same run, same machine):
  * activity labels: vectorized MedleyDB confidence vs a per-frame loop written the obvious way
    (the shape of the original reference code), on 60 s of stereo audio; values must agree;
  * synthesis: seconds of stem audio rendered per wall second (reference: real time), on the
    set the preprocessing row then reads (synthesized once, outside the preprocessing timing);
  * preprocessing: song seconds per wall second through the Beam job on 2 workers
    (``--direct_num_workers=2 --direct_running_mode=multi_processing``), start-up included, on
    PREP_SONGS x PREP_SECONDS of 5-stem stereo songs (target: >= 100x real time, the issue's);
  * tf.data: augmented 6 s mono examples per second (reference: one IASS batch of 16 per second).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

SR = 44100
PREP_SONGS, PREP_SECONDS = 32, 20.0  # large enough that Beam / worker start-up does not dominate
TWO_WORKERS = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (Beam workers)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _reference_confidence(audio: np.ndarray) -> np.ndarray:
    """Per-frame loop version of the MedleyDB activation confidence (spec A.5), for timing only."""
    import scipy.signal

    win, hop = 4096, 1024
    n_ch = audio.shape[0]
    envs = []
    for ch in audio.astype(np.float64):
        n = int(np.ceil(len(ch) / win)) * win
        x = np.zeros(n)
        x[: len(ch)] = ch
        w = scipy.signal.get_window("hann", win, fftbins=False)
        frames = []
        for start in range(0, n - win + 1, hop):
            seg = x[start:start + win]
            frames.append(np.mean(w * np.sqrt(np.where(seg > 0, seg, 0.0))))
        envs.append(frames)
    h = np.array(envs)
    h = n_ch * h / h.sum(axis=0).max()
    h[:, h.sum(axis=0) < 0.01] = 0.0
    b, a = scipy.signal.butter(2, 0.075, "low")
    h = scipy.signal.filtfilt(b, a, h, axis=1)
    return (1.0 / (1.0 + np.exp(-20.0 * (h - 0.15)))).max(axis=0)[1:-1]


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(out_dir: Path) -> list[dict]:
    from tfmusic.data import synth
    from tfmusic.data.stems import activity
    from tfmusic.data.stems.dataset import make_dataset
    from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess

    rows = []
    work = Path(out_dir) / "stems_bench"
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, 60 * SR)) * (np.sin(np.arange(60 * SR) / SR) > 0)).astype(np.float32)
    ours = _best(lambda: activity.activation_confidence(audio))
    ref = _best(lambda: _reference_confidence(audio), repeats=1)
    diff = float(np.abs(activity.activation_confidence(audio) - _reference_confidence(audio)).max())
    rows.append({"what": "stems: activity labels, 60 s stereo", "ours": ours, "reference": ref, "unit": "s",
                 "ratio": ref / ours, "target": ">= 2x", "met": ref / ours >= 2,
                 "notes": f"vectorized vs per-frame loop; max |diff| {diff:.1e}"})

    import os

    songs, seconds = PREP_SONGS, PREP_SECONDS
    start = time.perf_counter()
    manifest = synth.synthesize(work / "synth", songs, seed=0, seconds=seconds, progress=False)
    wall = time.perf_counter() - start
    stem_seconds = sum(s["stems"] for s in manifest["songs"]) * seconds
    rows.append({"what": "stems: synthesize (midirenderer, 44.1 kHz stereo)", "ours": stem_seconds / wall,
                 "reference": 1.0, "unit": "stem-s/s", "ratio": stem_seconds / wall, "target": ">= 10x real time",
                 "met": stem_seconds / wall >= 10, "notes": f"{songs} songs x {seconds:.0f} s incl. Beam start-up"})

    load_before = os.getloadavg()[0]
    cpu0, start = _cpu_seconds(), time.perf_counter()
    prep = preprocess(work / "synth", work / "tfrecords", config=PreprocessConfig(segment_seconds=10.0),
                      fractions=(1, 0, 0), beam_args=TWO_WORKERS, progress=False)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    load = max(load_before, os.getloadavg()[0])
    audio_seconds = sum(s["seconds"] for s in prep["songs"].values() if s["status"] == "written")
    if prep["counts"]["songs"]["written"] != songs:
        raise RuntimeError(f"preprocess wrote {prep['counts']['songs']['written']} of {songs} songs")
    rate = audio_seconds / wall
    stems_per_song = sum(s["stems"] for s in manifest["songs"]) / songs
    idle_bound = audio_seconds / (cpu / 2)  # what the same CPU work gives with 2 otherwise idle cores
    rows.append({"what": "stems: preprocess on 2 workers (validate+labels+TFRecords)", "ours": rate,
                 "reference": 1.0, "unit": "song-s/s", "ratio": rate, "target": ">= 100x real time",
                 "met": rate >= 100,
                 "notes": (f"{songs} songs x {seconds:.0f} s, {stems_per_song:.1f} stereo stems + mix per song, 10 s segments; "
                           f"--direct_num_workers=2 multi_processing, start-up included; wall {wall:.1f} s, "
                           f"CPU {cpu:.1f} s (main + workers) -> ~{idle_bound:.0f}x if the 2 cores were idle (estimate); "
                           f"load avg {load:.1f} on 2 cores. Bound: CPU share on the shared machine, then "
                           f"Beam start-up (each worker imports apache_beam ~0.8 CPU-s + scipy.signal ~0.7 CPU-s)")})

    ds = make_dataset(work / "tfrecords", "train", "vocals", 8, seed=0, deterministic=False, samples_per_epoch=64)
    for _ in ds.take(1):
        pass
    start = time.perf_counter()
    n = sum(int(b[0].shape[0]) for b in ds)
    wall = time.perf_counter() - start
    eps = n / wall
    rows.append({"what": "stems: make_dataset augmented (6 s mono)", "ours": eps, "reference": 16.0,
                 "unit": "examples/s", "ratio": eps / 16.0, "target": ">= 1x (16 ex/s)", "met": eps >= 16,
                 "notes": "cross-song groups of 8, random crop/gain; warm iterator"})
    return rows


if __name__ == "__main__":
    import sys

    for row in run(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")):
        print(row)
