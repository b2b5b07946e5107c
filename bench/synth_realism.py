"""How realistic is the synthesized multitrack set? Simple statistics per instrument and per mixture.

Statistics (numpy/scipy + pyloudnorm, on 44.1/22.05 kHz MedleyDB-layout folders written by
`tfmusic data synthesize`):

* per stem, over its active 100 ms frames (RMS within 40 dB of the stem's loudest frame): spectral
  centroid (Hz, median), spectral flatness (median), crest factor (peak / RMS of the active part,
  dB), and the activity ratio (share of the song's frames where the stem is active);
* per mixture: integrated loudness (BS.1770, LUFS), loudness range (EBU Tech 3342: 3 s short-term
  loudness, absolute gate -70 LUFS, relative gate -20 LU, 10th to 95th percentile, LU) and crest
  factor (dB).

Sets compared: ``dry`` (what tfmusic synthesized before: chorales only, the bundled soundfont, no
production chain), ``standard`` (the training data of ``make experiment``) and ``holdout`` (the
gap set). The last column gives what commercially produced music shows, with its source; where
no published measurement is at hand the column says "expected" and gives a rough range from the
instruments' acoustics, not a measurement.

    python bench/synth_realism.py --set dry=DIR --set standard=DIR --set holdout=DIR --out FILE.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

FRAME_S = 0.1
ACTIVE_DB = -40.0
REFERENCE = {
    ("mixture", "loudness_lufs"): "-14 to -7 LUFS: streaming-era pop/rock masters (loudness-war literature, "
                                  "e.g. Vickers 2010; services normalize to about -14)",
    ("mixture", "lra_lu"): "about 3-10 LU for pop/rock (EBU Tech 3342 reports small ranges for compressed "
                           "popular music, 15-20 LU and more for classical)",
    ("mixture", "crest_db"): "about 8-14 dB for modern masters, 15-20 dB before the loudness war (Vickers 2010)",
    ("drums", "centroid_hz"): "expected 1.5-5 kHz (cymbals and snare dominate the centroid)",
    ("bass", "centroid_hz"): "expected 100-600 Hz",
    ("vocals", "centroid_hz"): "expected 1-3 kHz",
    ("drums", "crest_db"): "expected 15-25 dB (transients)",
    ("bass", "crest_db"): "expected 8-14 dB (compressed, sustained)",
}


def frames(x: np.ndarray, sr: int) -> np.ndarray:
    hop = int(FRAME_S * sr)
    n = x.shape[-1] // hop
    return x[..., : n * hop].reshape(x.shape[0], n, hop) if n else np.zeros((x.shape[0], 0, hop))


def stem_stats(audio: np.ndarray, sr: int) -> dict | None:
    mono = audio.mean(axis=0, keepdims=True)
    fr = frames(mono, sr)[0]
    rms = np.sqrt(np.mean(fr ** 2, axis=-1) + 1e-20)
    if not np.any(rms > 1e-6):
        return None
    active = 20 * np.log10(rms / rms.max()) > ACTIVE_DB
    spec = np.abs(np.fft.rfft(fr[active] * np.hanning(fr.shape[-1]), axis=-1)) + 1e-12
    freqs = np.fft.rfftfreq(fr.shape[-1], 1 / sr)
    centroid = np.sum(spec * freqs, axis=-1) / np.sum(spec, axis=-1)
    flatness = np.exp(np.mean(np.log(spec), axis=-1)) / np.mean(spec, axis=-1)
    act = fr[active].ravel()
    crest = 20 * np.log10(np.abs(act).max() / np.sqrt(np.mean(act ** 2)))
    return {"centroid_hz": float(np.median(centroid)), "flatness": float(np.median(flatness)),
            "crest_db": float(crest), "activity": float(active.mean())}


def loudness_range(audio: np.ndarray, sr: int) -> float:
    import pyloudnorm

    meter = pyloudnorm.Meter(sr)
    step, win = int(sr * 1.0), int(sr * 3.0)
    values = [meter.integrated_loudness(audio[:, s:s + win].T) for s in range(0, audio.shape[1] - win + 1, step)]
    values = np.array([v for v in values if np.isfinite(v) and v > -70])
    if values.size == 0:
        return float("nan")
    energy = 10 * np.log10(np.mean(10 ** (values / 10)))
    values = values[values > energy - 20]
    return float(np.percentile(values, 95) - np.percentile(values, 10))


def set_stats(folder: Path) -> dict[str, list[dict]]:
    import pyloudnorm

    stats: dict[str, list[dict]] = {}
    for meta_path in sorted(folder.glob("*/*_METADATA.yaml")):
        meta = yaml.safe_load(meta_path.read_text())
        song = meta_path.parent
        mix, sr = sf.read(song / meta["mix_filename"], dtype="float32", always_2d=True)
        mix = mix.T
        stats.setdefault("mixture", []).append({
            "loudness_lufs": float(pyloudnorm.Meter(sr).integrated_loudness(mix.T)),
            "lra_lu": loudness_range(mix, sr),
            "crest_db": float(20 * np.log10(np.abs(mix).max() / np.sqrt(np.mean(mix ** 2))))})
        for stem in meta["stems"].values():
            audio, sr = sf.read(song / meta["stem_dir"] / stem["filename"], dtype="float32", always_2d=True)
            row = stem_stats(audio.T, sr)
            if row is not None:
                stats.setdefault(stem["tfmusic_instrument"], []).append(row)
    return stats


def markdown(results: dict[str, dict[str, list[dict]]]) -> str:
    names = list(results)
    lines = ["# How realistic is the synthesized set?", "",
             "Medians over songs (mixtures) or stems (instruments); activity = share of 100 ms frames within 40 dB "
             "of the stem's loudest. Sets: " + ", ".join(f"`{n}` ({sum(len(v) for k, v in r.items() if k != 'mixture')}"
                                                        f" stems, {len(r.get('mixture', []))} songs)"
                                                        for n, r in results.items()) + ".", "",
             "| what | statistic | " + " | ".join(names) + " | commercial music |",
             "|---|---|" + "---|" * (len(names) + 1)]
    groups = ["mixture", "drums", "bass", "vocals", "piano", "electric_guitar", "acoustic_guitar", "other"]
    for group in groups:
        keys = ("loudness_lufs", "lra_lu", "crest_db") if group == "mixture" else (
            "centroid_hz", "flatness", "crest_db", "activity")
        for key in keys:
            cells = []
            for name in names:
                rows = results[name].get(group, [])
                vals = [r[key] for r in rows if np.isfinite(r[key])]
                cells.append(f"{np.median(vals):.3g}" if vals else "")
            if any(cells):
                lines.append(f"| {group} | {key} | " + " | ".join(cells) + f" | {REFERENCE.get((group, key), '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, metavar="NAME=DIR",
                        help="a synthesized folder (MedleyDB layout) and its name; repeatable")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write (a .json is written beside it)")
    args = parser.parse_args(argv)
    results = {}
    for item in args.set:
        name, _, folder = item.partition("=")
        results[name] = set_stats(Path(folder))
        if not results[name]:
            raise SystemExit(f"synth_realism: no synthesized songs under {folder}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
