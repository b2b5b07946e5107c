"""Evaluation memory stays bounded on a long song: measured in a fresh subprocess (ru_maxrss)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import soundfile as sf

SR = 44100
INSTRUMENTS = ("drums", "bass", "vocals", "other")

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import scipy.signal, scipy.linalg, soundfile  # imported up front: their libraries are not the song's memory
    from tfmusic.data.stems import activity
    from tfmusic.data.stems.track import Track
    from tfmusic.evaluation.pipeline import EvaluationConfig, TrackEvaluator

    folder, targets = sys.argv[1], sys.argv[2].split(",")
    stems = {inst: [os.path.join(folder, inst + ".wav")] for inst in ("drums", "bass", "vocals", "other")}
    track = Track("long song", "folder", folder, os.path.join(folder, "mixture.wav"), stems)
    evaluator = TrackEvaluator(EvaluationConfig(oracles=["mix"], targets=targets))

    def peak_mb():  # the kernel's high-water mark of this process's resident memory
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 2**10

    with open("/proc/self/clear_refs", "w") as fh:  # reset the high-water mark (imports peak higher)
        fh.write("5")
    before = peak_mb()
    result = evaluator(track)
    assert result["status"] == "ok", result.get("error")
    frames = [len(t["frames"]) for t in result["docs"][0]["targets"]]
    print(json.dumps({"before_mb": before, "peak_mb": peak_mb(), "frames": frames}))
''')


def _write_song(folder, seconds: float) -> None:
    n = int(seconds * SR)
    rng = np.random.default_rng(0)
    mix = np.zeros((n, 2), np.float32)
    for k, inst in enumerate(INSTRUMENTS):
        audio = (0.1 * rng.standard_normal((n, 2))).astype(np.float32)
        audio[(np.arange(n) // (7 * SR)) % 3 == k % 3] = 0  # instruments enter and leave
        sf.write(os.path.join(folder, inst + ".wav"), audio, SR, subtype="PCM_16")
        mix += audio
    sf.write(os.path.join(folder, "mixture.wav"), mix, SR, subtype="PCM_16")


def test_long_song_evaluates_in_bounded_memory(tmp_path):
    """A 4-minute stereo song, two targets: the evaluation adds less than five whole-song signals.

    Every whole-song signal (mixture, references, estimates, the rest) is spilled to the scratch
    folder or computed per slice and read chunk by chunk, so only the mixture and one reference are
    in memory together, while the song is read. Measured: +342 MB (2 targets), +425 MB (4 targets:
    each target keeps its 42 MB factored reference model); the path that held the signals took
    +747 / +988 MB (mixture + references + rest + estimate)."""
    _write_song(tmp_path, 240)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), "drums,bass"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["frames"] == [240, 240]
    signal_mb = 240 * SR * 2 * 4 / 2**20  # one (2, S) float32 signal: 81 MB
    assert out["peak_mb"] - out["before_mb"] < 5 * signal_mb, out
