"""The shipped separation models: train (or resume) them, the augmentation ablation, and every model and
oracle scored on the in-distribution test songs and on the gap set, on the same frames.

Data (one table, :mod:`tfmusic.data.sample_sets`): training songs rendered with the "train" sample sets
(FluidR3 GM, TimGM6mb, freepats' recorded patches; six recorded Hydrogen kits and AVL Red Zeppelin for
the drums of 85 % of the songs) through the standard production chain; the gap set with sample sets and
a mixing chain never used in training (MuseScore General; The Black Pearl, recorded, and AVL Black
Pearl; the holdout chain: saturation, chorus, phaser, large plates). Each model trains on the training
split with the augmentations on by default (remix, per-stem EQ, LimitAug) and keeps the weights with the
lowest validation loss. The ablation trains IASS drums once per augmentation left out, at one smaller
budget, and scores each on the gap set.

Resumable: every stage is skipped when its output is complete; a model whose run has fewer steps than
asked resumes from its latest checkpoint (`tfmusic train --resume`), so the budget can grow across
sessions. A model that already ships and has no run here starts from the shipped weights
(`init_from`; its steps count towards the budget; `--no-from-shipped` trains it from scratch). Every stage is an ordinary `tfmusic` command run as a subprocess, logged with its wall time.

    python bench/experiment_pretrained.py                  # make experiment-pretrained
    python bench/experiment_pretrained.py --publish        # then copy the models into tfmusic/pretrained

Outputs in OUT (default bench/results/pretrained): synth/, stems/, synth_gap/, stems_gap/, runs/<model>/,
eval/, eval_gap/, eval_ablation/, experiment.json, experiment.md, curves.png; with --copy-to, the table,
JSON and figure are copied there (bench/experiments/experiment_pretrained.*).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from stages import load_average, run_tfmusic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tfmusic.data.sample_sets import sample_sets  # noqa: E402

# name -> (model kind, target); the IASS models are the shipped defaults, Open-Unmix the baseline.
MODELS = {"iass_drums": ("iass", "drums"), "iass_bass": ("iass", "bass"), "iass_vocals": ("iass", "vocals"),
          "umx_drums": ("umx", "drums"), "umx_bass": ("umx", "bass")}
METHOD = {"iass": "IASS", "umx": "Open-Unmix"}
DEFAULT_STEPS = "iass_drums=3000,iass_bass=3000,iass_vocals=2000,umx_drums=3000,umx_bass=3000"
ABLATION = {  # variant -> `tfmusic train --set` items; every variant trains IASS drums at --ablation-steps
    "all": [], "no-limiter": ["augmentation.limiter=0"], "no-eq": ["augmentation.eq=0"],
    "no-remix": ["augmentation.remix=false"], "none": ["augment=false"],
}
TRAIN_FLAGS = ["--batch-size", "4", "--segment-seconds", "6", "--lr", "1e-3", "--seed", "42", "--eval-every", "250",
               "--eval-steps", "12", "--set", "trainer.recompute=false", "--set", "trainer.checkpoint_every=100"]


def budgets(text: str) -> dict[str, int]:
    given = {k.strip(): int(v) for k, _, v in (item.partition("=") for item in text.split(",") if item.strip())}
    unknown = sorted(set(given) - set(MODELS))
    if unknown:
        raise SystemExit(f"experiment: --steps names unknown models {unknown} (known: {sorted(MODELS)})")
    return given


def last_step(run_dir: Path) -> int:
    steps = [int(p.name.split("-")[1].split(".")[0]) for p in (run_dir / "checkpoints").glob("ckpt-*.index")]
    return max(steps, default=0)


def ensure_data(out: Path, args, log: list[dict]) -> dict:
    """The training and gap sets, synthesized and preprocessed (skipped when their manifests exist)."""
    sets = {
        "": (args.songs, "21", "standard", args.splits, *(sample_sets("train", p) for p in ("all", "drums", "piano"))),
        "_gap": (args.gap_songs, "12", "holdout", "0,0,1", *(sample_sets("gap", p) for p in ("all", "drums", "piano"))),
    }
    used = {}
    for suffix, (songs, seed, mixing, splits, fonts, kits, pianos) in sets.items():
        if not fonts:
            raise SystemExit(f"experiment: no {'gap' if suffix else 'training'} SoundFont installed; install "
                             "the Debian packages named in tfmusic/data/sample_sets.py (README: Recorded samples)")
        synth, stems = out / f"synth{suffix}", out / f"stems{suffix}"
        if not (synth / "synth_manifest.json").is_file():
            cmd = ["data", "synthesize", "--out", str(synth), "--songs", str(songs), "--seconds", "20", "--seed", seed,
                   "--mixing", mixing, "--drum-kit-share", "0.85", "--quiet",
                   "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
            for flag, group in (("--soundfont", fonts), ("--drum-soundfont", kits), ("--piano-samples", pianos)):
                for s in group:
                    cmd += [flag, s.path]
            run_tfmusic(cmd, log)
        if not (stems / "manifest.json").is_file():
            run_tfmusic(["data", "preprocess", "--input", str(synth), "--out", str(stems), "--splits", splits,
                         "--seed", "0", "--quiet"], log)
        manifest = json.loads((synth / "synth_manifest.json").read_text())
        used["gap" if suffix else "train"] = [  # what the songs were rendered with (the manifest's record)
            {"name": info["name"], "package": info.get("package", ""), "license": info.get("license", ""),
             "plays": plays}
            for key, plays in (("soundfonts", "all"), ("drum_soundfonts", "drums"), ("pianos", "piano"))
            for info in manifest.get(key, [])]
    return used


def shipped_base(name: str, run_dir: Path, from_shipped: bool) -> dict | None:
    """Where ``run_dir`` starts: ``{"init_from", "steps", "train_seconds"}`` of the shipped model it
    fine-tunes (recorded in ``base.json`` when the run starts), or None for a run from scratch."""
    record = run_dir / "base.json"
    if record.is_file():
        return json.loads(record.read_text())
    if not from_shipped or (run_dir / "config.json").is_file():
        return None
    from tfmusic.models import pretrained

    entry = pretrained.registry().get(name)
    if not entry:
        return None
    import zipfile

    saved = json.loads(zipfile.ZipFile(pretrained.model_path(name)).read("config.json"))["config"]
    base = {"init_from": name, "steps": int(entry["steps"]), "train_seconds": 3600 * float(entry["train_hours"]),
            "sha256": entry["sha256"], "mask_activation": saved.get("mask_activation", "relu")}  # (older: ReLU)
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(base, indent=1))
    return base


def train(run_dir: Path, kind: str, target: str, steps: int, stems: Path, extra: list[str], log: list[dict],
          base: dict | None = None) -> None:
    """Train ``run_dir`` up to ``steps`` in all (fresh, resumed from its latest checkpoint, or fine-tuning
    the shipped model ``base`` names, whose own steps count towards ``steps``)."""
    steps -= base["steps"] if base else 0
    done = last_step(run_dir)
    if done >= steps and (run_dir / "model.keras").is_file():
        return
    if (run_dir / "config.json").is_file() and done > 0:
        cmd = ["train", kind, "--run-dir", str(run_dir), "--resume", "--steps", str(steps), "--quiet"]
    else:
        cmd = ["train", kind, "--data", str(stems), "--target", target, "--run-dir", str(run_dir),
               "--steps", str(steps), "--quiet", *TRAIN_FLAGS]
        tuned = [f"init_from={base['init_from']}", f"model_kwargs.mask_activation={base['mask_activation']}"] if base else []
        for item in extra + tuned:
            cmd += ["--set", item]
    run_tfmusic(cmd, log)


def tensorboard_curves(run_dir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """``{"train"|"eval": [(step, wall time, loss)]}`` from the run's TensorBoard events."""
    import tensorflow as tf

    curves: dict[str, list] = {}
    for split in ("train", "eval"):
        points = []
        for path in sorted((run_dir / "tensorboard" / split).glob("events.*")):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    if value.tag == "loss":
                        points.append((event.step, event.wall_time, float(tf.make_ndarray(value.tensor))))
        curves[split] = sorted(points)
    return curves


def training_seconds(curve: list[tuple[int, float, float]]) -> float:
    """Wall seconds of training: gaps over 10 minutes between logged steps (a stopped and resumed run)
    are left out."""
    times = sorted(p[1] for p in curve)  # by wall time: a resumed run logs its steps after the checkpoint again
    gaps = [b - a for a, b in zip(times, times[1:])]
    return float(sum(g for g in gaps if g < 600))


def plot_curves(curves: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, curve in sorted(curves.items()):
        for ax, split in zip(axes, ("train", "eval")):
            points = curve.get(split) or []
            if points:
                ax.plot([p[0] for p in points], [p[2] for p in points], label=name,
                        marker="o" if split == "eval" else None, lw=1 if split == "train" else 1.5)
    for ax, title in zip(axes, ("training loss (per logged step)", "validation loss")):
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(data: Path, out_dir: Path, methods: dict[str, list[Path]], args, log: list[dict],
             oracles: str = "ibm,irm,mix") -> dict:
    """``tfmusic evaluate`` of ``methods`` (+ oracles); rerun when any model has trained since."""
    scored = {name: {str(r): last_step(r) for r in runs} for name, runs in methods.items()}
    stamp = out_dir / "scored_models.json"
    fresh = stamp.is_file() and json.loads(stamp.read_text()) == scored
    if not (fresh and (out_dir / "summary.json").is_file()):
        cmd = ["evaluate", "--data", str(data), "--split", "test", "--out", str(out_dir), "--oracles", oracles,
               "--quiet"]
        for name, runs in methods.items():
            cmd += ["--model", f"{name}={','.join(str(r) for r in runs)}"]
        if args.max_seconds:
            cmd += ["--max-seconds", str(args.max_seconds)]
        run_tfmusic(cmd, log)
        stamp.write_text(json.dumps(scored, indent=1))
    return json.loads((out_dir / "summary.json").read_text())


def _f(v, signed: bool = False) -> str:
    return "n/a" if v is None or v != v else (f"{v:+.2f}" if signed else f"{v:.2f}")


def score_table(summary: dict, targets: list[str], methods: list[str]) -> list[str]:
    """Median SDR per target and method, the improvement over the mixture, activity F1."""
    bss, act = summary["bss"], summary.get("activity", {})
    head = methods + ["input-SDR", "IBM", "IRM"]
    lines = ["| target | " + " | ".join(head) + " | IASS over the mixture | IASS activity F1 |",
             "|---|" + "---|" * (len(head) + 2)]
    for t in targets:
        sdr = {m: bss.get(m, {}).get(t, {}).get("SDR") for m in head}
        mix = sdr.get("input-SDR")
        gain = None if sdr.get("IASS") is None or mix is None else sdr["IASS"] - mix
        f1 = act.get("IASS", {}).get(t, {}).get("f1")
        lines.append(f"| {t} | " + " | ".join(_f(sdr[m]) for m in head) + f" | {_f(gain, True)} | {_f(f1)} |")
    return lines


def to_markdown(record: dict) -> str:
    b = record["budget"]
    lines = ["# Experiment: the shipped separation models", "",
             f"Machine: {record['machine']}; load at start {record['load_start']}, at end {record['load_end']}. "
             f"Stages of this invocation: {record['total_seconds'] / 60:.1f} min (training resumed across sessions: "
             "each model's own training time is in the budget table).", "",
             "## Data", "",
             f"Training: {b['songs']} songs x 20 s, splits {b['splits']}; gap set: {b['gap_songs']} songs with sample "
             "sets and a mixing chain never used in training.", "",
             "| set | sample set | package | licence | plays |", "|---|---|---|---|---|"]
    for role, sets in record["sample_sets"].items():
        lines += [f"| {role} | {s['name']} | {s['package']} | {s['license']} | {s['plays']} |" for s in sets]
    lines += ["", "## Budget", "", "| model | steps | of which fine-tuning the shipped model | training wall time (min) "
              "| best validation loss |", "|---|---|---|---|---|"]
    for name, m in record["models"].items():
        tuned = f"{m['steps'] - m['base_steps']} (from {m['base_steps']})" if m.get("fine_tuned_from") else "-"
        lines.append(f"| {name} | {m['steps']} | {tuned} | {m['train_seconds'] / 60:.1f} | {_f(m['best_eval_loss'])} |")
    for key, title in (("in_distribution", "In distribution (test split of the training songs)"),
                       ("gap", "Gap set (unseen sample sets and mixing chain)")):
        lines += ["", f"## {title}: median SDR (dB)", ""]
        lines += score_table(record[key], record["targets"], ["IASS", "Open-Unmix"])
    if record.get("ablation"):
        lines += ["", f"## Ablation on the gap set: IASS drums, {b['ablation_steps']} steps per variant", "",
                  "| augmentation | drums SDR (dB) | over the mixture | activity F1 |", "|---|---|---|---|"]
        mix = record["ablation"]["bss"].get("input-SDR", {}).get("drums", {}).get("SDR")
        for variant in ABLATION:
            name = f"ablation-{variant}"
            sdr = record["ablation"]["bss"].get(name, {}).get("drums", {}).get("SDR")
            f1 = record["ablation"].get("activity", {}).get(name, {}).get("drums", {}).get("f1")
            gain = None if sdr is None or mix is None else sdr - mix
            lines.append(f"| {variant} | {_f(sdr)} | {_f(gain, True)} | {_f(f1)} |")
    lines += ["", "![training curves](experiment_pretrained_curves.png)", "", "| stage | wall s |", "|---|---|"]
    lines += [f"| `{s['command'][:160]}` | {s['seconds']} |" for s in record["stages"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "pretrained")
    parser.add_argument("--songs", type=int, default=240)
    parser.add_argument("--gap-songs", type=int, default=24)
    parser.add_argument("--splits", default="0.9,0.05,0.05")
    parser.add_argument("--steps", default=DEFAULT_STEPS, metavar="MODEL=N,...",
                        help=f"training budget per model (default {DEFAULT_STEPS}); raise it to resume longer")
    parser.add_argument("--only", default=None, metavar="M1,M2", help="train only these models this time")
    parser.add_argument("--ablation-steps", type=int, default=300, help="steps per ablation variant (0: none)")
    parser.add_argument("--max-seconds", type=float, default=None, help="score only the first N s of each song")
    parser.add_argument("--no-eval", action="store_true", help="train only (no scoring, no table)")
    parser.add_argument("--publish", action="store_true", help="copy the trained models into tfmusic/pretrained")
    parser.add_argument("--no-from-shipped", dest="from_shipped", action="store_false",
                        help="train a model that ships from scratch (default: a new run fine-tunes the shipped "
                             "model, whose steps count towards the budget)")
    parser.add_argument("--copy-to", type=Path, default=None, help="also copy experiment.{md,json} and the figure")
    args = parser.parse_args(argv)
    steps = budgets(args.steps)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    start, load_start = time.perf_counter(), load_average()
    sets = ensure_data(out, args, log)
    stems = out / "stems"
    only = set(args.only.split(",")) if args.only else set(steps)
    bases = {}
    for name, n in steps.items():
        if name in only:
            kind, target = MODELS[name]
            bases[name] = shipped_base(name, out / "runs" / name, args.from_shipped)
            train(out / "runs" / name, kind, target, n, stems, [], log, bases[name])
    if args.ablation_steps and not args.only:
        for variant, extra in ABLATION.items():
            train(out / "runs" / f"ablation-{variant}", "iass", "drums", args.ablation_steps, stems, extra, log)
    if args.no_eval:
        return 0
    trained = {n: out / "runs" / n for n in steps if (out / "runs" / n / "model.keras").is_file()}
    methods = {METHOD[kind]: [trained[n] for n in trained if MODELS[n][0] == kind] for kind in METHOD}
    methods = {m: runs for m, runs in methods.items() if runs}
    targets = sorted({MODELS[n][1] for n in trained})
    in_dist = evaluate(stems, out / "eval", methods, args, log)
    gap = evaluate(out / "stems_gap", out / "eval_gap", methods, args, log)
    ablation = None
    variants = {f"ablation-{v}": [out / "runs" / f"ablation-{v}"] for v in ABLATION
                if (out / "runs" / f"ablation-{v}" / "model.keras").is_file()}
    if variants:
        ablation = evaluate(out / "stems_gap", out / "eval_ablation", variants, args, log, oracles="mix")
    curves = {n: tensorboard_curves(r) for n, r in trained.items()}
    plot_curves(curves, out / "curves.png")
    models = {}
    for n, r in trained.items():
        base = shipped_base(n, r, False) or {"steps": 0, "train_seconds": 0.0}
        models[n] = {"steps": base["steps"] + last_step(r),
                     "train_seconds": base["train_seconds"] + training_seconds(curves[n]["train"]),
                     "fine_tuned_from": base.get("init_from"), "base_steps": base["steps"],
                     "best_eval_loss": min((p[2] for p in curves[n]["eval"]), default=None)}
    record = {"budget": {"songs": args.songs, "gap_songs": args.gap_songs, "splits": args.splits, "steps": steps,
                         "ablation_steps": args.ablation_steps, "train_flags": TRAIN_FLAGS},
              "machine": f"{os.cpu_count()} cores (shared), {sys.platform}", "load_start": load_start,
              "load_end": load_average(), "sample_sets": sets, "targets": targets, "models": models,
              "in_distribution": in_dist, "gap": gap, "ablation": ablation, "stages": log,
              "total_seconds": time.perf_counter() - start}
    (out / "experiment.json").write_text(json.dumps(record, indent=1, allow_nan=True))
    md = to_markdown(record)
    (out / "experiment.md").write_text(md)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "experiment.json", args.copy_to / "experiment_pretrained.json")
        shutil.copyfile(out / "experiment.md", args.copy_to / "experiment_pretrained.md")
        shutil.copyfile(out / "curves.png", args.copy_to / "experiment_pretrained_curves.png")
    if args.publish:
        from publish_models import publish_all

        publish_all(record, trained, out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
