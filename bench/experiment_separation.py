"""IASS vs Open-Unmix on the synthesized multitrack set, and the gap to an unseen production style.

Claim tested (Hung & Lerch 2020, abstract; spec A.7): per instrument, IASS >= Open-Unmix in SDR,
both above input-SDR (the mixture as estimate) and below the ideal binary mask (IBM).

Protocol: synthesize songs (`tfmusic data synthesize`: composed in ten styles and arranged from
chorales, humanized, several SoundFonts and drum kits, per-stem production chain), preprocess with
a song-level split (`tfmusic data preprocess`), train one IASS and one Open-Unmix model per
instrument with the SAME data, steps, batch size, excerpt length, learning rate and seed
(`tfmusic train iass|umx`), separate the held-out test songs, score them with BSS Eval v4 (1 s
windows; a silent estimate under a playing target is scored at the floor, never dropped) next to
the oracles (`tfmusic evaluate`), and draw the report (`tfmusic report`).

The gap: a second, smaller set rendered with a SoundFont and drum kit never used for training
(MuseScore General and AVL Black Pearl, from Debian's packages) and the ``holdout`` mixing chain
(saturation, chorus, phaser, large plates, other balances) is scored the same way. Without MuseScore
General installed the experiment stops before any work (``--holdout-songs 0`` skips the gap set):
every other SoundFont at hand is a training one.
Its distance to the in-distribution numbers is our stand-in for the synthesized-to-real gap.
Every stage is an ordinary `tfmusic` command run as a subprocess, logged with its wall time.

    python bench/experiment_separation.py --out bench/results/separation      # make experiment

Outputs in OUT: synth/, synth_holdout/, stems/, stems_holdout/, runs/<model>_<target>/ (trained
models: `tfmusic separate --model OUT/runs/iass_drums ...`), eval/, eval_holdout/, report/,
report_holdout/, experiment.json and experiment.md (budget, wall time per stage, both tables, the
claim verdict per instrument and the gap).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from stages import load_average, run_tfmusic

HERE = Path(__file__).resolve().parent
MODELS = {"iass": "IASS", "umx": "Open-Unmix"}
SF2 = Path("/usr/share/sounds/sf2")
# Training SoundFonts / drum kits (those installed), and the held-out ones for the gap set.
TRAIN_SOUNDFONTS = (SF2 / "FluidR3_GM.sf2", "bundled", SF2 / "sf_GMbank.sf2")
TRAIN_DRUM_KITS = (SF2 / "Red_Zeppelin_4_LV2.sf2",)
HOLDOUT_SOUNDFONTS = (SF2 / "MuseScore_General_Full.sf2",)
HOLDOUT_DRUM_KITS = (SF2 / "Black_Pearl_4_LV2.sf2",)


def installed(fonts) -> list[str]:
    return [str(f) for f in fonts if f == "bundled" or Path(f).is_file()]


def holdout_fonts(train_fonts: list[str], train_kits: list[str]) -> tuple[list[str], list[str]]:
    """The gap set's SoundFonts and drum kits: installed, and none of them a training one. Without an
    unseen SoundFont the experiment stops: a gap set rendered with a training font measures no gap."""
    fonts = [f for f in installed(HOLDOUT_SOUNDFONTS) if f not in train_fonts]
    kits = [k for k in installed(HOLDOUT_DRUM_KITS) if k not in train_kits]
    if not fonts:
        raise SystemExit("experiment: the holdout (gap) set needs a SoundFont that training does not use; of "
                         f"{', '.join(str(f) for f in HOLDOUT_SOUNDFONTS)} none is installed outside the training "
                         "fonts (Debian: musescore-general-soundfont-lossless); install it, or pass --holdout-songs 0 "
                         "to skip the gap set")
    return fonts, kits


def claim_verdicts(summary: dict, method: str, baseline: str) -> list[dict]:
    from tfmusic.evaluation.report import claim_rows

    return claim_rows(summary, method, baseline)


def target_steps(text: str, targets: list[str]) -> dict[str, int]:
    """``"400"`` -> every target 400; ``"drums=400,bass=200"`` -> per target (each must be named)."""
    if "=" not in text:
        return {t: int(text) for t in targets}
    given = {k.strip(): int(v) for k, _, v in (item.partition("=") for item in text.split(",") if item.strip())}
    missing = [t for t in targets if t not in given]
    if missing:
        raise SystemExit(f"experiment: --steps names no budget for {', '.join(missing)}")
    return {t: given[t] for t in targets}


def gap_rows(summary: dict, holdout: dict) -> list[dict]:
    """Median SDR per target and method on the in-distribution test songs and the holdout set
    (summaries are ``bss[method][target][metric]`` medians)."""
    rows = []
    for method, targets in sorted(summary["bss"].items()):
        for target, stats in sorted(targets.items()):
            other = holdout["bss"].get(method, {}).get(target)
            if other is None:
                continue
            a, b = stats.get("SDR"), other.get("SDR")
            rows.append({"target": target, "method": method, "in_distribution": a, "holdout": b,
                         "gap": None if a is None or b is None else b - a})
    return sorted(rows, key=lambda r: (r["target"], r["method"]))


def experiment_markdown(record: dict, summary_md: str, verdicts: list[dict], holdout_md: str = "",
                        gap: list[dict] | None = None) -> str:
    b = record["budget"]
    lines = ["# Experiment: IASS vs Open-Unmix (synthesized multitrack set)", "",
             f"Data: {b['songs']} songs x {b['seconds']} s (splits {b['splits']}), SoundFonts "
             f"{', '.join(Path(f).name for f in b['soundfonts'])}, drum kits "
             f"{', '.join(Path(f).name for f in b['drum_kits']) or 'none'}, mixing standard. Holdout set: "
             f"{b['holdout_songs']} songs, SoundFonts {', '.join(Path(f).name for f in b['holdout_soundfonts']) or 'none'}, "
             f"drum kits {', '.join(Path(f).name for f in b['holdout_drum_kits']) or 'none'}, mixing holdout.", "",
             f"Budget: targets "
             f"{', '.join(b['targets'])}; per model and instrument "
             f"{', '.join(f'{t} {n}' for t, n in b['steps'].items())} steps, batch {b['batch_size']}, "
             f"{b['segment_seconds']} s excerpts, lr {b['lr']}, seed {b['seed']}"
             + (f", extra training settings {b['train_set']}" if b["train_set"] else "") + ".",
             f"Machine: {record['machine']}; load average at start {record['load_start']}, at end "
             f"{record['load_end']} (other jobs shared the machine when the load exceeds 2: wall times, "
             "not metrics, depend on it). Total wall time "
             f"{record['total_seconds']:.0f} s ({record['total_seconds'] / 60:.1f} min).", "",
             "| stage | wall s |", "|---|---|"]
    lines += [f"| `{s['command']}` | {s['seconds']} |" for s in record["stages"]]
    lines += ["", summary_md, "## Claim (SDR, per instrument)", "",
              "| target | IASS | Open-Unmix | input-SDR | IBM | IASS >= Open-Unmix | both > input-SDR | both < IBM |",
              "|---|---|---|---|---|---|---|---|"]

    def f(v):
        return "n/a" if v is None or v != v else f"{v:.2f}"

    def yn(v):
        return "n/a" if v is None else ("yes" if v else "no")

    for r in verdicts:
        lines.append(f"| {r['target']} | {f(r['IASS'])} | {f(r['Open-Unmix'])} | {f(r['input-SDR'])} | {f(r['IBM'])} "
                     f"| {yn(r['method_ge_baseline'])} | {yn(r['above_floor'])} | {yn(r['below_ceiling'])} |")
    if gap:
        lines += ["", "## The gap: unseen SoundFont, drum kit and mixing chain", "",
                  "Median SDR (dB) on the in-distribution test songs and on the holdout set; gap = holdout - "
                  "in-distribution. The oracles and input-SDR rows show how much of the change is the material "
                  "itself (e.g. how loud the target sits in the mix) rather than the models.", "",
                  "| target | method | in-distribution | holdout | gap |", "|---|---|---|---|---|"]
        lines += [f"| {r['target']} | {r['method']} | {f(r['in_distribution'])} | {f(r['holdout'])} | {f(r['gap'])} |"
                  for r in gap]
    if holdout_md:
        lines += ["", "## Holdout set, full table", "", holdout_md.replace("# Separation results", "").strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "separation")
    parser.add_argument("--songs", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each synthesized song")
    parser.add_argument("--splits", default="0.85,0.05,0.1", help="train,valid,test shares of songs")
    parser.add_argument("--holdout-songs", type=int, default=10,
                        help="songs of the holdout set (unseen SoundFont, drum kit and mixing chain); 0: none")
    parser.add_argument("--targets", default="drums,bass", help="comma list of instruments")
    parser.add_argument("--steps", default="400", metavar="N|TARGET=N,...",
                        help="optimizer steps per model and instrument, or per instrument (drums=400,bass=200); "
                        "both models of an instrument always get the same budget")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--segment-seconds", type=float, default=6.0, help="training excerpt length")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42, help="training seed (data seed is 0)")
    parser.add_argument("--set", dest="train_set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra `tfmusic train --set` applied to BOTH models (e.g. trainer.log_every=50)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="score only the first N seconds of each test song (default: whole songs)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip stages whose outputs exist (data, finished runs)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    steps = target_steps(args.steps, targets)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    start = time.perf_counter()

    fonts, kits = installed(TRAIN_SOUNDFONTS), installed(TRAIN_DRUM_KITS)
    hold_fonts, hold_kits = holdout_fonts(fonts, kits) if args.holdout_songs else ([], [])
    load_start = load_average()
    sets = [("", args.songs, fonts, kits, "standard", "0", args.splits)]
    if args.holdout_songs:
        sets.append(("_holdout", args.holdout_songs, hold_fonts, hold_kits, "holdout", "1", "0,0,1"))
    for suffix, songs, sfs, dks, style, seed, splits in sets:
        synth, stems = out / f"synth{suffix}", out / f"stems{suffix}"
        if not (args.reuse and (synth / "synth_manifest.json").is_file()):
            cmd = ["data", "synthesize", "--out", str(synth), "--songs", str(songs), "--seconds", str(args.seconds),
                   "--seed", seed, "--mixing", style, "--quiet"]
            for font in sfs:
                cmd += ["--soundfont", font]
            for kit in dks:
                cmd += ["--drum-soundfont", kit]
            run_tfmusic(cmd, log)
        if not (args.reuse and (stems / "manifest.json").is_file()):
            run_tfmusic(["data", "preprocess", "--input", str(synth), "--out", str(stems),
                         "--splits", splits, "--seed", "0", "--quiet"], log)
    stems = out / "stems"

    runs: dict[str, list[str]] = {name: [] for name in MODELS.values()}
    for target in targets:
        for kind, name in MODELS.items():
            run_dir = out / "runs" / f"{kind}_{target}"
            runs[name].append(str(run_dir))
            if args.reuse and (run_dir / "model.keras").is_file():
                continue
            cmd = ["train", kind, "--data", str(stems), "--target", target, "--steps", str(steps[target]),
                   "--batch-size", str(args.batch_size), "--segment-seconds", str(args.segment_seconds),
                   "--lr", str(args.lr), "--seed", str(args.seed), "--no-eval", "--run-dir", str(run_dir),
                   "--quiet"]
            for item in args.train_set:
                cmd += ["--set", item]
            run_tfmusic(cmd, log)

    for suffix, *_ in sets:
        eval_dir, report_dir = out / f"eval{suffix}", out / f"report{suffix}"
        cmd = ["evaluate", "--data", str(out / f"stems{suffix}"), "--split", "test", "--out", str(eval_dir),
               "--oracles", "ibm,irm,mix", "--quiet"]
        for name, paths in runs.items():
            cmd += ["--model", f"{name}={','.join(paths)}"]
        if args.max_seconds:
            cmd += ["--max-seconds", str(args.max_seconds)]
        run_tfmusic(cmd, log)
        run_tfmusic(["report", "--results", str(eval_dir), "--out", str(report_dir), "--baseline", "Open-Unmix"],
                    log)

    summary = json.loads((out / "eval" / "summary.json").read_text())
    verdicts = claim_verdicts(summary, "IASS", "Open-Unmix")
    holdout = json.loads((out / "eval_holdout" / "summary.json").read_text()) if args.holdout_songs else None
    gap = gap_rows(summary, holdout) if holdout else []
    record = {
        "budget": {"songs": args.songs, "seconds": args.seconds, "splits": args.splits, "targets": targets,
                   "steps": steps, "batch_size": args.batch_size, "segment_seconds": args.segment_seconds,
                   "lr": args.lr, "seed": args.seed, "train_set": args.train_set, "max_seconds": args.max_seconds,
                   "soundfonts": fonts, "drum_kits": kits, "holdout_songs": args.holdout_songs,
                   "holdout_soundfonts": hold_fonts, "holdout_drum_kits": hold_kits},
        "machine": f"{os.cpu_count()} cores (shared), {sys.platform}",
        "load_start": load_start,
        "load_end": load_average(),
        "stages": log,
        "total_seconds": time.perf_counter() - start,
        "bss": summary["bss"],
        "activity": summary["activity"],
        "claim": verdicts,
        "holdout": {"bss": holdout["bss"], "activity": holdout["activity"]} if holdout else None,
        "gap": gap,
    }
    (out / "experiment.json").write_text(json.dumps(record, indent=1, allow_nan=True))
    holdout_md = (out / "eval_holdout" / "summary.md").read_text() if holdout else ""
    md = experiment_markdown(record, (out / "eval" / "summary.md").read_text(), verdicts, holdout_md, gap)
    (out / "experiment.md").write_text(md)
    print("\n" + md)
    print(f"experiment: results in {out}/experiment.md and {out}/report/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
