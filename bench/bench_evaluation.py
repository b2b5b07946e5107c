"""Benchmark: evaluation time and peak memory, tfmusic's chunked BSS Eval v4 against museval.

Sides, each in its own subprocess (peak RSS = ``ru_maxrss``; 2 BLAS/FFT threads each), on the
same synthetic song (4 targets, 60 s, stereo, 44.1 kHz; estimates = target + 10 % of another
target + noise):

* ``ours``: :mod:`tfmusic.evaluation.bss_v4` per target against (target, rest), the reference
  model built once per target and shared by every method;
* ``before``: what ``tfmusic evaluate`` ran until now: ``museval.metrics.bss_eval`` per target
  against (target, rest), once per method;
* ``museval``: ``museval.evaluate`` on the 4 targets jointly (MUSDB's procedure).

With one method, ours vs museval and ours vs before; with 5 methods (2 models + 3 oracles, as
``make experiment`` evaluates), ours vs before. SDR must agree with museval (SDR and ISR depend only
on a target's own estimate; SIR/SAR differ by design: rest vs other targets). A last row runs the
evaluation pipeline on a 10-minute stereo song and reports its peak memory against the 2 GB bound:
3 oracles (IBM/IRM/mix) x 2 targets, then the same with 2 models (full-size IASS and Open-Unmix per
target, untrained: memory and speed do not depend on the weights) added, which must not need more.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECONDS = 60.0
SR = 44100
THREADS = "2"
LONG_SONG_SECONDS = 600.0
MEMORY_BOUND_GB = 2.0


def _song(seconds: float = SECONDS, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    refs = [
        np.stack([0.4 * np.sin(2 * np.pi * 110 * t)] * 2),
        0.2 * rng.standard_normal((2, n)) * (np.sin(2 * np.pi * 2 * t) > 0),
        np.stack([0.3 * np.sin(2 * np.pi * 440 * t + c) for c in range(2)]),
        0.1 * rng.standard_normal((2, n)),
    ]
    refs = [r.astype(np.float32) for r in refs]
    ests = [(r + 0.1 * refs[(i + 1) % 4] + 0.01 * rng.standard_normal(r.shape)).astype(np.float32)
            for i, r in enumerate(refs)]
    return refs, ests


def _side(name: str, methods: int) -> dict:
    """One side, in this (child) process: wall seconds and SDR per target and frame."""
    from tfmusic.evaluation import bss_v4
    from tfmusic.evaluation.metrics import museval_metrics

    refs, ests = _song()
    mixture = sum(refs)
    start = time.perf_counter()
    sdr = []
    if name == "museval":
        museval_metrics()
        import museval

        sdr = museval.evaluate([r.T for r in refs], [e.T for e in ests], win=SR, hop=SR)[0].tolist()
    else:
        for ref, est in zip(refs, ests):
            rest = mixture - ref
            model = bss_v4.ReferenceModel.build(ref, rest) if name == "ours" else None
            for _ in range(methods):
                if name == "ours":
                    out = bss_v4.bss_eval_v4(model, ref, rest, est, SR, SR)["SDR"]
                else:
                    out = museval_metrics().bss_eval(
                        np.stack([ref.T, rest.T]).astype(np.float64), np.stack([est.T, rest.T]).astype(np.float64),
                        window=SR, hop=SR, compute_permutation=False, filters_len=512)[0][0]
            sdr.append(np.asarray(out).tolist())
    return {"seconds": time.perf_counter() - start, "sdr": sdr,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _write_long_song(folder: str) -> None:
    """A 10-minute stereo song as files (in its own process, so its arrays are not in the measured peak)."""
    import soundfile as sf

    n = int(LONG_SONG_SECONDS * SR)
    rng = np.random.default_rng(1)
    mix = np.zeros((n, 2), dtype=np.float32)
    for k, inst in enumerate(("drums", "bass", "other")):
        audio = (0.1 * rng.standard_normal((n, 2))).astype(np.float32)
        audio *= (np.sin(2 * np.pi * (0.1 + k * 0.07) * np.arange(n) / SR) > -0.5)[:, None]
        sf.write(os.path.join(folder, f"{inst}.wav"), audio, SR, subtype="PCM_16")
        mix += audio
    sf.write(os.path.join(folder, "mixture.wav"), mix, SR, subtype="PCM_16")


def _save_models(folder: str) -> list[str]:
    """Full-size stereo IASS and Open-Unmix models for drums and bass (random weights) as .keras files;
    returns ``--model``-style method specs."""
    from tfmusic.models.iass import IASS
    from tfmusic.models.openunmix import OpenUnmix

    specs = []
    for name, make in (("IASS", IASS), ("Open-Unmix", OpenUnmix)):
        paths = []
        for target in ("drums", "bass"):
            path = os.path.join(folder, f"{name}_{target}.keras")
            make(nb_channels=2, target=target).build_for_frames().save(path)
            paths.append(path)
        specs.append(f"{name}={','.join(paths)}")
    return specs


def _long_song_pipeline(folder: str, with_models: bool = False) -> dict:
    """The evaluation pipeline (3 oracles, optionally 2 models, x 2 targets) on the 10-minute song in ``folder``."""
    from tfmusic.data.stems.track import Track
    from tfmusic.evaluation.pipeline import EvaluationConfig, TrackEvaluator, parse_method

    stems = {inst: [os.path.join(folder, f"{inst}.wav")] for inst in ("drums", "bass", "other")}
    track = Track(name="long", layout="folder", path=folder, mixture=os.path.join(folder, "mixture.wav"),
                  stems=stems)
    methods = [parse_method(spec) for spec in _save_models(folder)] if with_models else []
    evaluator = TrackEvaluator(EvaluationConfig(methods=methods, oracles=["ibm", "irm", "mix"],
                                                targets=["drums", "bass"]))
    evaluator.models()  # loaded before the measured part: the song, not the models, is what must stay bounded
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    result = evaluator(track)
    seconds = time.perf_counter() - start
    if result["status"] != "ok":
        raise RuntimeError(result.get("error"))
    return {"seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "base_gb": base, "docs": len(result["docs"])}


def _child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "OPENBLAS_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS,
           "TF_NUM_INTRAOP_THREADS": THREADS, "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_evaluation {args}: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load"] = round((load + os.getloadavg()[0]) / 2, 2)
    return out


def run(out_dir: Path) -> list[dict]:
    ours1, before1, joint = (_child(["side", n, "1"]) for n in ("ours", "before", "museval"))
    ours5, before5 = (_child(["side", n, "5"]) for n in ("ours", "before"))
    diff = float(np.nanmax(np.abs(np.asarray(ours1["sdr"]) - np.asarray(joint["sdr"]))))
    loads = lambda a, b: f"load {a['load']}/{b['load']}" + (" (uneven load)" if abs(a["load"] - b["load"]) > 1 else "")  # noqa: E731
    rows = []
    for what, a, b, ref_name in (
            ("1 method: chunked v4 vs museval.evaluate (joint)", ours1, joint, "museval joint"),
            ("1 method: chunked v4 vs tfmusic before (museval per target)", ours1, before1, "before"),
            ("5 methods: chunked v4 (references shared) vs tfmusic before", ours5, before5, "before")):
        ratio = b["seconds"] / a["seconds"]
        rows.append({"what": f"evaluation time, 4 targets x {SECONDS:g} s stereo, {what}", "ours": a["seconds"],
                     "reference": b["seconds"], "unit": "s", "ratio": ratio, "target": ">= 2x",
                     "met": ratio >= 2.0 and diff <= 1e-3,
                     "notes": f"{ref_name}; peak memory {a['peak_gb']:.2f} vs {b['peak_gb']:.2f} GB; "
                              f"max |dSDR| vs museval {diff:.1e} dB; {THREADS} threads each; {loads(a, b)}"})
    rows.append({"what": f"evaluation peak memory, 4 targets x {SECONDS:g} s stereo: chunked v4 vs museval joint",
                 "ours": ours1["peak_gb"], "reference": joint["peak_gb"], "unit": "GB",
                 "ratio": joint["peak_gb"] / ours1["peak_gb"], "target": "<= museval", "met":
                 ours1["peak_gb"] <= joint["peak_gb"], "notes": "ru_maxrss of each side's process"})
    with tempfile.TemporaryDirectory() as folder:
        _child(["write-long", folder])
        oracles_only = None
        for with_models, what in ((False, "3 oracles x 2 targets"), (True, "2 models + 3 oracles x 2 targets")):
            long = _child(["long", folder] + (["models"] if with_models else []))
            # the reference is measured: the oracles-only run for the row with models; none for the first
            reference = oracles_only["peak_gb"] if with_models else None
            rows.append({"what": f"evaluation pipeline peak memory, {LONG_SONG_SECONDS / 60:g}-minute stereo song, "
                                 f"{what}", "ours": long["peak_gb"], "reference": reference, "unit": "GB",
                         "ratio": reference / long["peak_gb"] if reference else None,
                         "target": f"< {MEMORY_BOUND_GB:g} GB", "met": long["peak_gb"] < MEMORY_BOUND_GB,
                         "notes": ("reference: the same song with the 3 oracles only (this run); " if with_models
                                   else "no reference measured (the bound is the target); ")
                                  + f"{long['seconds']:.0f} s wall, {long['docs']} method documents; process before "
                                  f"the song (models loaded): {long['base_gb']:.2f} GB; load {long['load']}"})
            oracles_only = oracles_only or long
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "side":
        print(json.dumps(_side(sys.argv[2], int(sys.argv[3]))))
    elif len(sys.argv) > 2 and sys.argv[1] == "write-long":
        _write_long_song(sys.argv[2])
        print(json.dumps({}))
    elif len(sys.argv) > 2 and sys.argv[1] == "long":
        print(json.dumps(_long_song_pipeline(sys.argv[2], with_models="models" in sys.argv[3:])))
    else:
        for row in run(Path("bench/results")):
            print(row)
