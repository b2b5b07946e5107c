"""IASS vs IASS+pitch on the synthesized multitrack set: does a multi-pitch head help separation?

Claim examined (issue 17; the IASS paper's future work): training the IASS U-Net with frame-level
multi-pitch labels next to the activity labels (a pitch head on the latent, separation MSE +
activity BCE + pitch BCE) separates at least as well as plain IASS, and also transcribes the
separated instrument.

Protocol: synthesize songs (`tfmusic data synthesize`: stems + the MIDI they were rendered from),
preprocess with a song-level split (`tfmusic data preprocess`: schema v2 records carry the 88-key
pitch rolls), train `tfmusic train iass` and `tfmusic train iass_pitch` for one pitched target
with the SAME data, steps, batch size, excerpt length, learning rate and seed, score both on the
held-out test songs with `tfmusic evaluate` (museval SDR medians, activity F1 against the labels),
and score the IASS+pitch transcription of the test songs' separated target against their MIDI
with mir_eval (`tfmusic.evaluation.transcription.evaluate_songs`: frame-level multipitch
F-measure and note-onset F1, with and without activity gating). Each stage is an ordinary
`tfmusic` command run as a subprocess (the transcription stage runs in process), logged with its
wall time; run it under `nice -n 10` on a shared machine.

Default budget (`make experiment-pitch`): 24 songs x 12 s (splits 0.7/0.1/0.2), target bass,
300 steps per model, batch 2, 3 s excerpts, lr 1e-3, seed 42, no in-training evaluation.

    python bench/experiment_pitch.py --out bench/results/experiment_pitch

Outputs in OUT: synth/, stems/, runs/{iass,iass_pitch}_<target>/, eval/ (museval), transcription.json,
experiment.json and experiment.md (budget, load, wall time per stage, the table).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from stages import load_average, run_tfmusic

HERE = Path(__file__).resolve().parent
MODELS = {"iass": "IASS", "iass_pitch": "IASS+pitch"}


def lookup(table: dict, method: str, target: str) -> dict:
    """``table[method][target]`` or ``table[target][method]`` (both summary layouts exist)."""
    if method in table and target in table[method]:
        return table[method][target]
    return table.get(target, {}).get(method, {})


def number(value) -> float | None:
    """A summary cell: a number, or a dict holding its ``median``."""
    if isinstance(value, dict):
        value = value.get("median")
    return None if value is None else float(value)


def rows(summary: dict, transcription: dict, target: str) -> list[dict]:
    out = []
    for kind, name in MODELS.items():
        bss, act = lookup(summary.get("bss", {}), name, target), lookup(summary.get("activity", {}), name, target)
        row = {"method": name, "SDR": number(bss.get("SDR")), "SIR": number(bss.get("SIR")),
               "SAR": number(bss.get("SAR")), "activity_f1": number(act.get("f1")), "tracks": bss.get("tracks")}
        for gate, result in transcription.items():
            if kind == "iass_pitch":
                row[f"pitch_f_{gate}"] = result["summary"]["multipitch"]["f_measure"]
                row[f"pitch_p_{gate}"] = result["summary"]["multipitch"]["precision"]
                row[f"pitch_r_{gate}"] = result["summary"]["multipitch"]["recall"]
                row[f"note_f_{gate}"] = result["summary"]["notes"]["f_measure"]
        out.append(row)
    return out


def markdown(record: dict) -> str:
    b = record["budget"]

    def f(v, digits=2):
        return "n/a" if v is None or v != v else f"{v:.{digits}f}"

    lines = ["# Experiment: IASS vs IASS+pitch (synthesized multitrack set)", "",
             f"Data: {b['songs']} songs x {b['seconds']} s (splits {b['splits']}, data seed 0), test songs: "
             f"{record['test_songs']}. Target {b['target']}; per model {b['steps']} steps, batch {b['batch_size']}, "
             f"{b['segment_seconds']} s excerpts, lr {b['lr']}, seed {b['seed']}, pitch_weight {b['pitch_weight']} "
             f"(activity_weight 2 for both).",
             f"Machine: {record['machine']}; load average (1/5/15 min) at start {record['load_start']}, at end "
             f"{record['load_end']}. Wall time measured by this run {record['total_seconds']:.0f} s "
             f"({record['total_seconds'] / 60:.1f} min)" + (
                 f"; stages of an earlier invocation (`--prior-stages`, as given, not measured by this run and not "
                 f"in that total): {record['prior_stage_seconds_given']:.0f} s"
                 if record.get("prior_stage_seconds_given") else "") + ".", "",
             "| stage | wall s | measured by this run |", "|---|---|---|"]
    lines += [f"| `{s['command']}` | {s['seconds']} | "
              f"{'yes' if s.get('measured', True) else 'no: --prior-stages, as given'} |" for s in record["stages"]]
    lines += ["", f"## Results ({b['target']}, held-out test songs)", "",
              "SDR/SIR/SAR: museval BSS Eval v4 medians (1 s frames, then songs), `tfmusic evaluate`. Activity F1: "
              "frame level against the activity labels. Pitch: mir_eval.multipitch frame-level F-measure "
              "(precision / recall) and mir_eval.transcription note-onset F1 of the separated target's "
              "transcription vs the song's MIDI, means over test songs, with the model's activity gate (gated) "
              "and without (raw).", "",
              "| method | SDR | SIR | SAR | activity F1 | pitch F (gated) | pitch P / R (gated) | note F1 (gated) "
              "| pitch F (raw) | note F1 (raw) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        pr = (f"{f(r.get('pitch_p_gated'), 3)} / {f(r.get('pitch_r_gated'), 3)}"
              if "pitch_p_gated" in r else "n/a")
        lines.append(f"| {r['method']} | {f(r['SDR'])} | {f(r['SIR'])} | {f(r['SAR'])} | {f(r['activity_f1'], 3)} "
                     f"| {f(r.get('pitch_f_gated'), 3)} | {pr} | {f(r.get('note_f_gated'), 3)} "
                     f"| {f(r.get('pitch_f_raw'), 3)} | {f(r.get('note_f_raw'), 3)} |")
    lines += ["", "Plain IASS has no pitch head (n/a). At this budget the numbers say whether the multitask "
              "pipeline trains end to end and how the two compare at equal cost, not what either reaches with "
              "a full training budget."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "experiment_pitch")
    parser.add_argument("--songs", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--splits", default="0.7,0.1,0.2")
    parser.add_argument("--target", default="bass", help="a pitched instrument (drums have no pitch labels)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--segment-seconds", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pitch-weight", type=float, default=1.0)
    parser.add_argument("--copy-to", type=Path, default=None,
                        help="also write experiment.md/.json here as experiment_pitch.md/.json")
    parser.add_argument("--reuse", action="store_true", help="skip stages whose outputs exist")
    parser.add_argument("--oracles", default="mix", help="`tfmusic evaluate --oracles` (default: mix = input-SDR)")
    parser.add_argument("--prior-stages", type=Path, default=None,
                        help="JSON list of {command, seconds, status} for stages an earlier invocation ran "
                        "(listed first in the stage table when --reuse skips them, marked as not measured by "
                        "this run and left out of its total wall time)")
    args = parser.parse_args(argv)
    if args.target == "drums":
        parser.error("drums have no pitch labels; pick bass, piano, ...")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # stages an earlier invocation ran: listed, marked as not measured by this run, kept out of its total
    prior = [{**s, "measured": False} for s in json.loads(args.prior_stages.read_text())] if args.prior_stages else []
    log: list[dict] = list(prior)
    start, load_start = time.perf_counter(), load_average()
    synth, stems = out / "synth", out / "stems"
    if not (args.reuse and (synth / "synth_manifest.json").is_file()):
        run_tfmusic(["data", "synthesize", "--out", str(synth), "--songs", str(args.songs), "--seconds",
                     str(args.seconds), "--seed", "0", "--quiet"], log)
    if not (args.reuse and (stems / "manifest.json").is_file()):
        run_tfmusic(["data", "preprocess", "--input", str(synth), "--out", str(stems), "--splits", args.splits,
                     "--seed", "0", "--quiet"], log)
    runs = {}
    for kind in MODELS:
        run_dir = out / "runs" / f"{kind}_{args.target}"
        runs[kind] = run_dir
        if args.reuse and (run_dir / "model.keras").is_file():
            continue
        cmd = ["train", kind, "--data", str(stems), "--target", args.target, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--segment-seconds", str(args.segment_seconds),
               "--lr", str(args.lr), "--seed", str(args.seed), "--no-eval", "--run-dir", str(run_dir), "--quiet"]
        if kind == "iass_pitch":
            cmd += ["--pitch-weight", str(args.pitch_weight)]
        run_tfmusic(cmd, log)
    eval_dir = out / "eval"
    cmd = ["evaluate", "--data", str(stems), "--split", "test", "--out", str(eval_dir), "--oracles", args.oracles,
           "--quiet"]
    for kind, name in MODELS.items():
        cmd += ["--model", f"{name}={runs[kind]}"]
    # SDR evaluation runs as a subprocess while the transcription is scored in this process (2 cores)
    print(f"\n$ tfmusic {shlex.join(cmd)}  (in the background)", flush=True)
    eval_start = time.perf_counter()
    evaluation = subprocess.Popen([sys.executable, "-m", "tfmusic", *cmd],
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    manifest = json.loads((stems / "manifest.json").read_text())
    test_songs = sorted(s for s, v in manifest["songs"].items() if v["split"] == "test" and v["status"] == "written")
    from tfmusic.evaluation.transcription import evaluate_songs

    transcription = {}
    for gate in ("gated", "raw"):
        t0 = time.perf_counter()
        transcription[gate] = evaluate_songs([str(runs["iass_pitch"])], [str(synth / s) for s in test_songs],
                                             args.target, gate_by_activity=gate == "gated")
        log.append({"command": f"evaluate_songs(iass_pitch, {len(test_songs)} test songs, {args.target}, {gate})",
                    "seconds": round(time.perf_counter() - t0, 1), "status": 0})
    (out / "transcription.json").write_text(json.dumps(transcription, indent=1, allow_nan=True))
    status = evaluation.wait()
    log.append({"command": "tfmusic " + shlex.join(cmd) + " (concurrent with the transcription scoring)",
                "seconds": round(time.perf_counter() - eval_start, 1), "status": status})
    if status != 0:
        raise SystemExit(f"experiment: tfmusic evaluate failed with exit status {status}")
    summary = json.loads((eval_dir / "summary.json").read_text())
    for stage in log[len(prior):]:
        stage["measured"] = True
    record = {
        "budget": {"songs": args.songs, "seconds": args.seconds, "splits": args.splits, "target": args.target,
                   "steps": args.steps, "batch_size": args.batch_size, "segment_seconds": args.segment_seconds,
                   "lr": args.lr, "seed": args.seed, "pitch_weight": args.pitch_weight},
        "machine": f"{os.cpu_count()} cores (shared), {sys.platform}",
        "load_start": load_start, "load_end": load_average(), "stages": log,
        "total_seconds": time.perf_counter() - start,  # this run only: prior stages are not in it
        "prior_stage_seconds_given": sum(stage["seconds"] for stage in prior), "test_songs": len(test_songs),
        "rows": rows(summary, transcription, args.target),
        "bss": summary.get("bss"), "activity": summary.get("activity"),
        "transcription": {g: r["summary"] for g, r in transcription.items()},
    }
    text = json.dumps(record, indent=1, allow_nan=True)
    md = markdown(record)
    (out / "experiment.json").write_text(text)
    (out / "experiment.md").write_text(md)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        (args.copy_to / "experiment_pitch.json").write_text(text)
        (args.copy_to / "experiment_pitch.md").write_text(md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
