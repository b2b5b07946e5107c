"""Evaluation memory stays bounded on a long song: measured in a fresh subprocess (ru_maxrss)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import json, os, resource, sys, tempfile
    import numpy as np, soundfile as sf
    from tfmusic.data.stems.layouts import Track
    from tfmusic.evaluation.pipeline import EvaluationConfig, TrackEvaluator

    seconds, sr = float(sys.argv[1]), 44100
    n = int(seconds * sr)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        stems, mix = {}, np.zeros((n, 2), np.float32)
        for k, inst in enumerate(("drums", "bass", "vocals", "other")):
            audio = (0.1 * rng.standard_normal((n, 2))).astype(np.float32)
            audio[(np.arange(n) // (7 * sr)) % 3 == k % 3] = 0  # instruments enter and leave
            sf.write(os.path.join(tmp, inst + ".wav"), audio, sr, subtype="PCM_16")
            stems[inst] = [os.path.join(tmp, inst + ".wav")]
            mix += audio
        sf.write(os.path.join(tmp, "mixture.wav"), mix, sr, subtype="PCM_16")
        del mix, audio
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        track = Track("long song", "folder", tmp, os.path.join(tmp, "mixture.wav"), stems)
        result = TrackEvaluator(EvaluationConfig(oracles=["mix"], targets=["drums"]))(track)
    assert result["status"] == "ok", result.get("error")
    frames = len(result["docs"][0]["targets"][0]["frames"])
    print(json.dumps({"before_mb": before, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
                      "frames": frames}))
''')


def test_long_song_evaluates_in_bounded_memory():
    """A 4-minute stereo song: the evaluation adds well under 1 GB to the process (museval's whole-track
    FFTs alone, 2^24 points per reference and estimate channel, would take over 1 GB)."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "240"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["frames"] == 240
    # four (C, S) float32 signals of 4 minutes are ~340 MB (mixture, reference, rest, estimate)
    assert out["peak_mb"] - out["before_mb"] < 700, out
