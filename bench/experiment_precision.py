"""bf16 vs fp32 training at a fixed budget: the loss curve and the SDR afterwards (issue 16).

Claim tested: ``mixed_bfloat16`` trains IASS as well as float32 (loss curve and held-out SDR within
noise) while each step runs faster on a CPU with native bf16, so it can be the default there.

Protocol: the stems of the separation experiment (`make experiment`, bench/results/separation/stems,
synthesized songs with a song-level split), one IASS per precision for one target with the SAME data,
steps, batch, excerpt length, learning rate and seed (`tfmusic train iass --mixed-precision ...`), then
one `tfmusic evaluate` of all runs on the held-out test songs (BSS Eval v4, 1 s windows). The loss curves
and the training seconds (as experiment_vae reads them) come from each run's TensorBoard events.

    python bench/experiment_precision.py --stems bench/results/separation/stems --out bench/results/experiment_precision
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from experiment_vae import _tensorboard_seconds
from stages import load_average, run_tfmusic

HERE = Path(__file__).resolve().parent
PRECISIONS = ("float32", "mixed_bfloat16")


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, training loss) at each logged step, from the run's TensorBoard events."""
    import tensorflow as tf

    points = {}
    for path in sorted((run_dir / "tensorboard" / "train").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "loss":
                    points[event.step] = float(tf.make_ndarray(value.tensor))
    return sorted(points.items())


def _window_mean(curve: list[tuple[int, float]], last: int) -> float:
    values = [v for _, v in curve[-last:]]
    return sum(values) / len(values) if values else float("nan")


def to_markdown(record: dict) -> str:
    b = record["budget"]
    lines = ["# Experiment: bf16 vs fp32 training at a fixed budget (IASS)", "",
             f"Data: {b['stems']} (test split for SDR). Budget per run: target {b['target']}, {b['steps']} steps, "
             f"batch {b['batch_size']}, {b['segment_seconds']} s excerpts, lr {b['lr']}, seeds "
             f"{', '.join(map(str, b['seeds']))} (one run per precision and seed).",
             f"Machine: {record['machine']}; load average at start {record['load_start']}, at end "
             f"{record['load_end']}.", "",
             "| precision | seed | train s (TensorBoard) | s/step | loss, mean of the last 5 logged | "
             f"median SDR {b['target']} (dB) | SIR | SAR |", "|---|---|---|---|---|---|---|---|"]
    for r in record["runs"]:
        lines.append(f"| {r['precision']} | {r['seed']} | {r['train_seconds']:.0f} | {r['seconds_per_step']:.2f} | "
                     f"{r['final_loss']:.4f} | {r['SDR']:.2f} | {r['SIR']:.2f} | {r['SAR']:.2f} |")

    def mean(precision: str, key: str) -> float:
        values = [r[key] for r in record["runs"] if r["precision"] == precision]
        return sum(values) / len(values)

    fp32, bf16 = PRECISIONS
    sdr = {p: sorted(r["SDR"] for r in record["runs"] if r["precision"] == p) for p in PRECISIONS}
    lines += ["", f"Means over seeds, bf16 vs fp32: {mean(fp32, 'seconds_per_step') / mean(bf16, 'seconds_per_step'):.2f}x "
              f"faster per step; SDR {mean(bf16, 'SDR'):.2f} vs {mean(fp32, 'SDR'):.2f} dB "
              f"({mean(bf16, 'SDR') - mean(fp32, 'SDR'):+.2f}); final loss {mean(bf16, 'final_loss'):.4f} vs "
              f"{mean(fp32, 'final_loss'):.4f}. SDR range over seeds: fp32 {sdr[fp32][0]:.2f}..{sdr[fp32][-1]:.2f}, "
              f"bf16 {sdr[bf16][0]:.2f}..{sdr[bf16][-1]:.2f} dB.", "",
              "Loss curves (training loss at each logged step):", "",
              "| step | " + " | ".join(f"{r['precision']} s{r['seed']}" for r in record["runs"]) + " |",
              "|---|" + "---|" * len(record["runs"])]
    curves = [dict(r["curve"]) for r in record["runs"]]
    for step in sorted(set().union(*curves)):
        lines.append(f"| {step} | " + " | ".join(f"{c[step]:.4f}" if step in c else "" for c in curves) + " |")
    lines += ["", "Stages run by this invocation (runs already trained are reused):", "", "| stage | wall s |",
              "|---|---|"]
    lines += [f"| `{s['command']}` | {s['seconds']} |" for s in record["stages"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stems", type=Path, default=HERE / "results" / "separation" / "stems",
                        help="preprocessed stems with a test split (make experiment builds them)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "experiment_precision")
    parser.add_argument("--target", default="drums")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--segment-seconds", type=float, default=6.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", default="42,43", help="comma list: one run per precision and seed")
    parser.add_argument("--copy-to", type=Path, default=None, help="also write the tables into this folder")
    args = parser.parse_args(argv)
    if not any(args.stems.glob("*-test.*")):
        raise SystemExit(f"experiment: {args.stems} has no test split: run `make experiment` first "
                         "(or `tfmusic data synthesize` + `tfmusic data preprocess`)")
    args.out.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    load_start = load_average()
    seeds = [int(v) for v in args.seeds.split(",")]
    runs = {(p, seed): args.out / "runs" / f"iass_{args.target}_{p}_s{seed}" for seed in seeds for p in PRECISIONS}
    for (precision, seed), run_dir in runs.items():
        if (run_dir / "model.keras").is_file():
            continue
        run_tfmusic(["train", "iass", "--data", str(args.stems), "--target", args.target, "--steps", str(args.steps),
                     "--batch-size", str(args.batch_size), "--segment-seconds", str(args.segment_seconds),
                     "--lr", str(args.lr), "--seed", str(seed), "--mixed-precision", precision, "--no-eval",
                     "--run-dir", str(run_dir), "--quiet"], log)
    eval_dir = args.out / "eval"
    cmd = ["evaluate", "--data", str(args.stems), "--split", "test", "--out", str(eval_dir), "--quiet"]
    for (precision, seed), run_dir in runs.items():
        cmd += ["--model", f"IASS-{precision}-s{seed}={run_dir}"]
    run_tfmusic(cmd, log)
    summary = json.loads((eval_dir / "summary.json").read_text())
    record = {"machine": f"{os.cpu_count()} cores, {sys.platform}", "load_start": load_start,
              "load_end": load_average(), "stages": log,
              "budget": {"stems": str(args.stems), "target": args.target, "steps": args.steps,
                         "batch_size": args.batch_size, "segment_seconds": args.segment_seconds, "lr": args.lr,
                         "seeds": seeds}, "runs": []}
    for (precision, seed), run_dir in runs.items():
        curve, seconds = loss_curve(run_dir), _tensorboard_seconds(run_dir, args.steps)
        stats = summary["bss"][f"IASS-{precision}-s{seed}"][args.target]
        record["runs"].append({"precision": precision, "seed": seed, "train_seconds": seconds,
                               # the span runs from the end of step 1 (its trace excluded) to step `steps`
                               "seconds_per_step": seconds / max(args.steps - 1, 1), "curve": curve,
                               "final_loss": _window_mean(curve, 5), "SDR": stats["SDR"], "SIR": stats["SIR"],
                               "SAR": stats["SAR"]})
    text = to_markdown(record)
    for folder in [args.out] + ([args.copy_to] if args.copy_to else []):
        (folder / "experiment_precision.json").write_text(json.dumps(record, indent=1))
        (folder / "experiment_precision.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
