"""Does `tfmusic separate SONG` with no --model work on songs it has never heard? The shipped models
on gap-set songs (sample sets and mixing chain never used in training): each of drums, bass, vocals
and other must be closer to its true stem than the mixture is, at the song's length and rate.

    python bench/check_shipped.py --synth bench/results/pretrained/synth_gap --out bench/results/shipped_check

Songs are read in the MedleyDB layout `tfmusic data synthesize` writes; the true "other" is the sum of
every stem that is not drums, bass or vocals. SDR here is the plain whole-song signal-to-distortion
ratio 10 log10(|s|^2 / |s - s_hat|^2) (no BSS Eval projections), for the estimate and for the mixture.
Writes OUT/check.json and OUT/check.md (copied to bench/experiments/shipped_check.md with --copy-to).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

STEMS = ("drums", "bass", "vocals", "other")
FOUR_STEMS = {"drums": "drums", "bass": "bass", "vocals": "vocals"}  # everything else is "other"


def true_stems(song_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """(mixture, {stem: audio}, rate) of a synthesized song, audio as (frames, channels)."""
    meta = yaml.safe_load(next(song_dir.glob("*_METADATA.yaml")).read_text())
    mix, rate = sf.read(song_dir / meta["mix_filename"], always_2d=True, dtype="float32")
    stems = {s: np.zeros_like(mix) for s in STEMS}
    for entry in meta["stems"].values():
        audio, _ = sf.read(song_dir / meta["stem_dir"] / entry["filename"], always_2d=True, dtype="float32")
        stems[FOUR_STEMS.get(entry["tfmusic_instrument"], "other")] += audio
    return mix, stems, rate


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = np.sum((reference - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / max(error, 1e-12)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", type=Path, required=True, help="a `tfmusic data synthesize` folder (the gap set)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--songs", type=int, default=6, help="how many songs with all four stems to check")
    parser.add_argument("--copy-to", type=Path, default=None)
    args = parser.parse_args(argv)
    songs = []
    for song_dir in sorted(p for p in args.synth.iterdir() if p.is_dir() and not p.name.startswith(".")):
        _, stems, _ = true_stems(song_dir)
        if all(np.abs(stems[s]).max() > 1e-3 for s in STEMS):
            songs.append(song_dir)
    songs = songs[: args.songs]
    if not songs:
        raise SystemExit(f"{args.synth}: no song has drums, bass, vocals and other")
    mixes = [str(next(d.glob("*_MIX.wav"))) for d in songs]
    subprocess.run([sys.executable, "-m", "tfmusic", "separate", *mixes, "--out", str(args.out), "--overwrite",
                    "--quiet"], check=True)
    rows = []
    for song_dir, mix_path in zip(songs, mixes):
        mix, stems, rate = true_stems(song_dir)
        folder = args.out / Path(mix_path).stem
        for stem in STEMS:
            if not (folder / f"{stem}.wav").is_file():  # no shipped model separates it
                rows.append({"song": song_dir.name, "stem": stem, "rate_ok": False, "length_ok": False, "sdr": None,
                             "mixture_sdr": sdr(stems[stem], mix), "missing": True})
                continue
            estimate, est_rate = sf.read(folder / f"{stem}.wav", always_2d=True, dtype="float32")
            rows.append({"song": song_dir.name, "stem": stem, "rate_ok": est_rate == rate,
                         "length_ok": estimate.shape == mix.shape,
                         "sdr": sdr(stems[stem], estimate) if estimate.shape == mix.shape else None,
                         "mixture_sdr": sdr(stems[stem], mix)})
    lines = ["# Shipped models on unseen songs (gap set)", "",
             f"`tfmusic separate` with no `--model` on {len(songs)} gap-set songs that hold all four stems. SDR (dB, "
             "whole song, plain energy ratio) of each estimate and of the mixture against the true stem.", "",
             "| song | stem | estimate SDR | mixture SDR | closer than the mixture | song's rate and length |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        better = r["sdr"] is not None and r["sdr"] > r["mixture_sdr"]
        if r.get("missing"):
            lines.append(f"| {r['song']} | {r['stem']} | not written | {r['mixture_sdr']:.2f} | NO (no shipped model) | - |")
            continue
        lines.append(f"| {r['song']} | {r['stem']} | {r['sdr']:.2f} | {r['mixture_sdr']:.2f} | "
                     f"{'yes' if better else 'NO'} | {'yes' if r['rate_ok'] and r['length_ok'] else 'NO'} |")
    for stem in STEMS:
        gains = [r["sdr"] - r["mixture_sdr"] for r in rows if r["stem"] == stem and r["sdr"] is not None]
        lines.append(f"| median | {stem} | | | " + (f"{np.median(gains):+.2f} dB over the mixture" if gains
                                                     else "not separated") + " | |")
    record = {"songs": [d.name for d in songs], "rows": rows,
              "all_closer": all(r["sdr"] is not None and r["sdr"] > r["mixture_sdr"] for r in rows),
              "all_rate_and_length": all(r["rate_ok"] and r["length_ok"] for r in rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check.json").write_text(json.dumps(record, indent=1))
    (args.out / "check.md").write_text("\n".join(lines) + "\n")
    if args.copy_to:
        (args.copy_to / "shipped_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if record["all_closer"] and record["all_rate_and_length"] else 1


if __name__ == "__main__":
    sys.exit(main())
