"""ONNX for the edge: file size vs weights, and int8 / fp16 variants vs fp32 (speed and SDR on songs).

Model: the trained separator SavedModel from ``make demo`` (``demo_out/models/separator``, latest
version) or ``TFMUSIC_BENCH_SEPARATOR``; without one the rows say so. Songs: 4 held-out synthesized
songs (seed 77, 20 s; the demo trains on seed 0), rendered here. SDR: whole-song
``10 log10(|s|^2 / |s - s_hat|^2)`` per target, median over songs (a quick global SDR, not BSS-eval).
Speed: 10 s stereo, ONNX Runtime CPU with 2 intra-op threads for every variant, repetitions
interleaved (fp32, int8, fp16, fp32, ...), best of ``TFMUSIC_BENCH_REPEATS`` (3), load recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from timing import interleaved, load_average, load_note, overloaded

SONGS, SEED, SECONDS = 4, 77, 20


def _separator_dir() -> Path | None:
    from tfmusic.export.saved_model import ExportError, resolve_version_dir

    path = os.environ.get("TFMUSIC_BENCH_SEPARATOR", "demo_out/models/separator")
    try:
        return resolve_version_dir(path) if Path(path).exists() else None
    except ExportError:
        return None


def _weight_bytes(saved_model_dir: Path) -> int:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    unique = {id(v): v for v in loaded.variables}
    return int(sum(np.prod(v.shape) * v.dtype.size for v in unique.values()))


def _songs(root: Path) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(mixture (C, S), {instrument: stem sum (C, S)}) per held-out song."""
    import soundfile as sf
    import yaml

    if not (root / "synth_manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "tfmusic.cli.main", "data", "synthesize", "--out", str(root),
                        "--songs", str(SONGS), "--seed", str(SEED), "--seconds", str(SECONDS), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
    out = []
    for meta_path in sorted(root.glob("*/*_METADATA.yaml")):
        meta = yaml.safe_load(meta_path.read_text())
        mix, _ = sf.read(meta_path.parent / meta["mix_filename"], dtype="float32", always_2d=True)
        stems: dict[str, np.ndarray] = {}
        for stem in meta["stems"].values():
            audio, _ = sf.read(meta_path.parent / meta["stem_dir"] / stem["filename"], dtype="float32", always_2d=True)
            name = stem["tfmusic_instrument"]
            stems[name] = stems.get(name, 0) + audio.T
        out.append((mix.T, stems))
    return out


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    err = np.sum((reference.astype(np.float64) - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(err, 1e-12)))


def run(out_dir: Path) -> list[dict]:
    import onnxruntime as ort

    from tfmusic.export.onnx import OnnxSeparator, export_onnx
    from tfmusic.export.onnx_precision import make_variant

    sm_dir = _separator_dir()
    if sm_dir is None:
        return [{"what": "ONNX edge (size, int8, fp16)", "met": None,
                 "notes": "not measured: no trained separator (run `make demo` or set TFMUSIC_BENCH_SEPARATOR)"}]
    work = out_dir / "onnx_edge"
    work.mkdir(parents=True, exist_ok=True)
    (fp32,) = export_onnx(sm_dir, work / "separator.onnx")
    paths = {"fp32": fp32.path}
    checks = {"fp32": fp32.max_rel_diff}
    for precision in ("int8", "fp16"):
        report = make_variant(fp32.path, precision)
        paths[precision], checks[precision] = report.path, report.max_rel_diff
    weights = _weight_bytes(sm_dir)
    sizes = {k: p.stat().st_size for k, p in paths.items()}
    n_fft = 4096
    folded = 8 * n_fft * (n_fft + 2)  # forward + inverse float32 bases tf2onnx would have stored

    # speed: 10 s stereo, same threads for every variant, interleaved
    repeats = int(os.environ.get("TFMUSIC_BENCH_REPEATS", 3))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 2, 10 * 44100))).astype(np.float32)
    best, loads = interleaved({k: (lambda s=s: s.run(None, {"waveform": x})) for k, s in sessions.items()}, repeats)

    # SDR on held-out songs
    songs = _songs(out_dir / "onnx_edge_songs")
    separators = {k: OnnxSeparator(p, threads=2) for k, p in paths.items()}
    targets = separators["fp32"].targets
    sdr: dict[str, list[float]] = {k: [] for k in paths}
    vs_fp32: dict[str, list[float]] = {k: [] for k in paths if k != "fp32"}
    for mix, stems in songs:
        outs = {k: sep(mix[None]) for k, sep in separators.items()}
        for t in targets:
            if t not in stems:
                continue
            for k, out in outs.items():
                sdr[k].append(_sdr(stems[t], out[t][0]))
                if k != "fp32":
                    vs_fp32[k].append(_sdr(outs["fp32"][t][0], out[t][0]))
    med = {k: float(np.median(v)) if v else float("nan") for k, v in sdr.items()}
    load = load_average()
    rows = [{
        "what": "ONNX separator file size vs its fp32 weights", "ours": sizes["fp32"] / 1e6, "reference": weights / 1e6,
        "unit": "MB", "ratio": weights / sizes["fp32"], "target": "file <= 1.2x weights",
        "met": sizes["fp32"] <= 1.2 * weights and fp32.max_rel_diff <= 1e-4,
        "notes": f"{sm_dir}; STFT bases rebuilt in-graph (stored they add {folded / 1e6:.0f} MB); "
                 f"parity vs SavedModel {fp32.max_rel_diff:.1e}; int8 file {sizes['int8'] / 1e6:.1f} MB, "
                 f"fp16 {sizes['fp16'] / 1e6:.1f} MB"}]
    d_int8 = med["fp32"] - med["int8"]
    rows.append({
        "what": "ONNX int8 (dynamic) vs fp32 ONNX, 10 s stereo", "ours": best["int8"], "reference": best["fp32"],
        "unit": "s", "ratio": best["fp32"] / best["int8"], "target": ">= 2x at <= 0.3 dB SDR loss",
        "met": None if overloaded(loads) else best["fp32"] / best["int8"] >= 2 and d_int8 <= 0.3,
        "notes": f"SDR {med['int8']:.2f} vs {med['fp32']:.2f} dB (loss {d_int8:.2f} dB, {len(songs)} held-out songs, "
                 f"{','.join(targets)}); int8 vs fp32 output SDR {np.median(vs_fp32['int8']):.1f} dB; only weight "
                 f"MatMuls are int8 (the STFT basis products and convolutions stay fp32); {load_note(loads)}"})
    d_fp16 = med["fp32"] - med["fp16"]
    rows.append({
        "what": "ONNX fp16 vs fp32 ONNX on CPU, 10 s stereo", "ours": best["fp16"], "reference": best["fp32"],
        "unit": "s", "ratio": best["fp32"] / best["fp16"], "target": "GPU variant: CPU speed informative only",
        "met": None if d_fp16 <= 0.3 else False,
        "notes": f"SDR {med['fp16']:.2f} vs {med['fp32']:.2f} dB (loss {d_fp16:.2f} dB); fp16 vs fp32 output SDR "
                 f"{np.median(vs_fp32['fp16']):.1f} dB; max rel diff {checks['fp16']:.1e}; no GPU here to time it; "
                 f"load {load}"})
    return rows
