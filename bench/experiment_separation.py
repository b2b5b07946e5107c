"""IASS vs Open-Unmix on the synthesized multitrack set: the IASS paper's claim at a small budget.

Claim tested (Hung & Lerch 2020, abstract; spec A.7): per instrument, IASS >= Open-Unmix in SDR,
both above input-SDR (the mixture as estimate) and below the ideal binary mask (IBM).

Protocol: synthesize songs (`tfmusic data synthesize`), preprocess with a song-level split
(`tfmusic data preprocess`), train one IASS and one Open-Unmix model per instrument with the SAME
data, steps, batch size, excerpt length, learning rate and seed (`tfmusic train iass|umx`),
separate the held-out test songs, score them with museval BSS Eval v4 (1 s windows, median over
frames then songs) next to the oracles (`tfmusic evaluate`), and draw the report (`tfmusic report`).
Every stage is an ordinary `tfmusic` command run as a subprocess, logged with its wall time.

Default budget (the `make experiment` setting, meant for a 2-core CPU in under an hour; only the
smaller run below was timed, on a shared box): 24 songs x
12 s (split 0.7/0.1/0.2 -> 17 train / 2 valid / 5 test songs), targets drums and bass, 200 steps per
model and instrument, batch 2, 3 s excerpts, no in-training evaluation (2 valid songs cannot fill
batches), full-size models (IASS 3.2 M, Open-Unmix 8.9 M parameters). Measured on the shared 2-core
box at load ~10 (nice'd): ~4-6 s per step for either model at batch 2 x 3 s, i.e. ~10 min per model
and instrument at 120 steps, so 4 x 200 steps is ~70 min at that load and should fit an hour on an
idle machine (extrapolated, not measured). That is far from the paper's
budget (hundreds of epochs on MedleyDB + Mixing Secrets), so the numbers say whether the pipeline
reproduces the ordering at this budget, not what the paper measured.

    python bench/experiment_separation.py --out bench/results/separation
    python bench/experiment_separation.py --out /tmp/sep --targets drums --steps 120   # what was run

Outputs in OUT: synth/, stems/, runs/<model>_<target>/, eval/ (per-song museval JSON, summary),
report/ (report.md, sdr_boxplot.png, metrics_bars.png, activity_<song>.png), experiment.json and
experiment.md (budget, wall time per stage, the table and the claim verdict per instrument).
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

HERE = Path(__file__).resolve().parent
MODELS = {"iass": "IASS", "umx": "Open-Unmix"}


def run_tfmusic(argv: list[str], log: list[dict]) -> float:
    """Run one `tfmusic` command; abort the experiment with its exit status if it fails."""
    cmd = [sys.executable, "-m", "tfmusic", *argv]
    print(f"\n$ tfmusic {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    log.append({"command": "tfmusic " + shlex.join(argv), "seconds": round(seconds, 1),
                "status": result.returncode})
    if result.returncode != 0:
        raise SystemExit(f"experiment: command failed with exit status {result.returncode}: "
                         f"tfmusic {shlex.join(argv)}")
    return seconds


def claim_verdicts(summary: dict, method: str, baseline: str) -> list[dict]:
    from tfmusic.evaluation.report import claim_rows

    return claim_rows(summary, method, baseline)


def experiment_markdown(record: dict, summary_md: str, verdicts: list[dict]) -> str:
    b = record["budget"]
    lines = ["# Experiment: IASS vs Open-Unmix (synthesized multitrack set)", "",
             f"Budget: {b['songs']} songs x {b['seconds']} s (splits {b['splits']}), targets "
             f"{', '.join(b['targets'])}; per model and instrument {b['steps']} steps, batch {b['batch_size']}, "
             f"{b['segment_seconds']} s excerpts, lr {b['lr']}, seed {b['seed']}"
             + (f", extra training settings {b['train_set']}" if b["train_set"] else "") + ".",
             f"Machine: {record['machine']}. Total wall time {record['total_seconds']:.0f} s.", "",
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
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "separation")
    parser.add_argument("--songs", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each synthesized song")
    parser.add_argument("--splits", default="0.7,0.1,0.2", help="train,valid,test shares of songs")
    parser.add_argument("--targets", default="drums,bass", help="comma list of instruments")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per model and instrument")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--segment-seconds", type=float, default=3.0, help="training excerpt length")
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
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    start = time.perf_counter()

    synth, stems = out / "synth", out / "stems"
    if not (args.reuse and (synth / "synth_manifest.json").is_file()):
        run_tfmusic(["data", "synthesize", "--out", str(synth), "--songs", str(args.songs),
                     "--seconds", str(args.seconds), "--seed", "0", "--quiet"], log)
    if not (args.reuse and (stems / "manifest.json").is_file()):
        run_tfmusic(["data", "preprocess", "--input", str(synth), "--out", str(stems),
                     "--splits", args.splits, "--seed", "0", "--quiet"], log)

    runs: dict[str, list[str]] = {name: [] for name in MODELS.values()}
    for target in targets:
        for kind, name in MODELS.items():
            run_dir = out / "runs" / f"{kind}_{target}"
            runs[name].append(str(run_dir))
            if args.reuse and (run_dir / "model.keras").is_file():
                continue
            cmd = ["train", kind, "--data", str(stems), "--target", target, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--segment-seconds", str(args.segment_seconds),
                   "--lr", str(args.lr), "--seed", str(args.seed), "--no-eval", "--run-dir", str(run_dir),
                   "--quiet"]
            for item in args.train_set:
                cmd += ["--set", item]
            run_tfmusic(cmd, log)

    eval_dir, report_dir = out / "eval", out / "report"
    cmd = ["evaluate", "--data", str(stems), "--split", "test", "--out", str(eval_dir),
           "--oracles", "ibm,irm,mix", "--quiet"]
    for name, paths in runs.items():
        cmd += ["--model", f"{name}={','.join(paths)}"]
    if args.max_seconds:
        cmd += ["--max-seconds", str(args.max_seconds)]
    run_tfmusic(cmd, log)
    run_tfmusic(["report", "--results", str(eval_dir), "--out", str(report_dir), "--baseline", "Open-Unmix"], log)

    summary = json.loads((eval_dir / "summary.json").read_text())
    verdicts = claim_verdicts(summary, "IASS", "Open-Unmix")
    record = {
        "budget": {"songs": args.songs, "seconds": args.seconds, "splits": args.splits, "targets": targets,
                   "steps": args.steps, "batch_size": args.batch_size, "segment_seconds": args.segment_seconds,
                   "lr": args.lr, "seed": args.seed, "train_set": args.train_set, "max_seconds": args.max_seconds},
        "machine": f"{os.cpu_count()} cores (shared), {sys.platform}",
        "stages": log,
        "total_seconds": time.perf_counter() - start,
        "bss": summary["bss"],
        "activity": summary["activity"],
        "claim": verdicts,
    }
    (out / "experiment.json").write_text(json.dumps(record, indent=1, allow_nan=True))
    md = experiment_markdown(record, (eval_dir / "summary.md").read_text(), verdicts)
    (out / "experiment.md").write_text(md)
    print("\n" + md)
    print(f"experiment: results in {out}/experiment.md and {report_dir}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
