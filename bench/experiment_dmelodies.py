"""The dMelodies benchmark (reference-spec C.7-C.10): beta-, Annealed- and Factor-VAE x CNN / RNN.

Each (architecture, objective) is trained with the spec's settings (C.8: Adam 1e-4, batch 512; beta-VAE
beta 1 and C 50, Annealed-VAE beta 1 and C 50, Factor-VAE beta 1, C 50, gamma 10 -- the middle value of
each of the paper's grids) for a stated step budget, then scored on the test split (C.9: sampled z of up
to 201 batches of 512; MIG, modularity, SAP with 20-bin discretization; token reconstruction accuracy,
argmax, no teacher forcing). The paper trains 100 epochs x 1,853 batches = 185,300 steps per model; a
budget of S steps is the fraction S / 185,300 of it. The schedules are compressed with the budget so
their shape is the paper's: an "epoch" for the schedules is S / 100 steps (warm-up, beta = 0: epochs 0-10 of
100) and the exponential ramp takes 1e5 x S / 185,300 iterations (54 % of training, as in the
paper).

The paper's numbers (C.10) are figures only (median MIG and reconstruction accuracy per method); the
table prints the qualitative findings the paper states beside ours.

    .venv/bin/python bench/experiment_dmelodies.py --out bench/results/experiment_dmelodies \\
        --data data/dmelodies --steps 1500 --archs cnn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

PAPER_STEPS = 100 * 1853  # C.6 / C.8: 100 epochs of 1,853 batches of 512
PAPER_RAMP = 1e5
OBJECTIVES = ("beta", "annealed", "factor")
METRICS = ("mig", "modularity", "sap", "reconstruction_accuracy")
LABELS = {"beta": "beta-VAE (b 1, C 50)", "annealed": "Annealed-VAE (C 50)", "factor": "Factor-VAE (g 10)"}
# C.10 / the paper's abstract: only qualitative statements are available offline
PAPER_NOTE = ("Paper (C.10): numbers are in figures only (median MIG, reconstruction accuracy per method and "
              "architecture over 3 seeds x 3 hyperparameters); stated findings: MIG on dMelodies comparable to "
              "dSprites; reconstruction much harder on dMelodies, with the median accuracy of 2 of the methods "
              "below 50 %.")


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def ensure_data(data_dir: Path, progress: bool) -> None:
    """Generate the full dMelodies TFRecords into ``data_dir`` unless they are there (about 10 s)."""
    if (data_dir / "metadata.json").is_file():
        return
    from tfmusic.data import dmelodies

    print(f"generating dMelodies into {data_dir} ...", flush=True)
    dmelodies.generate(str(data_dir), progress=progress)


def schedule(steps: int) -> dict:
    """The paper's schedule shape compressed to ``steps`` (see the module docstring)."""
    return {"steps_per_epoch": max(1, round(steps / 100)),
            "ramp_iterations": max(1.0, PAPER_RAMP * steps / PAPER_STEPS)}


def run_one(arch: str, objective: str, seed: int, data_dir: Path, out: Path, steps: int, batch_size: int,
            eval_batches: int, init: str, progress: bool, weights: str = "final") -> dict:
    """Train (unless trained) and score one model with its ``weights``: "final" (the step-``steps`` weights) or
    "best" (the lowest validation loss; the |KL - C| terms of the Annealed and Factor objectives make that loss
    non-monotone, so it can be a very early checkpoint). New runs keep those weights in model.keras
    (``trainer.keep_model``); runs from before that option kept "best" and are scored "final" from their
    last checkpoint."""
    from experiment_vae import _tensorboard_seconds, check_reusable, export_checkpoint
    from tfmusic.training.vae import VAEConfig, evaluate_run, open_data, train_run

    model = f"dmelodies-{arch}"
    run_dir = out / f"{arch}_{objective}_seed{seed}"
    cfg = VAEConfig(model=model, objective=objective, seed=seed, init=init, **schedule(steps))
    data = open_data(model, data_dir)
    if (run_dir / "model.keras").is_file():
        check_reusable(run_dir, steps, batch_size)
        print(f"{run_dir}: already trained ({steps} steps), evaluating only", flush=True)
    else:
        train_run(cfg, data, run_dir, data_dir=str(data_dir), batch_size=batch_size, steps=steps,
                  eval_every=max(1, steps // 4), eval_steps=5, progress=progress, keep_model=weights)
    train_s = _tensorboard_seconds(run_dir, steps)
    kept = json.loads((run_dir / "config.json").read_text()).get("trainer", {}).get("keep_model", "best")
    if weights == "best" and kept == "final":
        raise SystemExit(f"{run_dir}: model.keras holds the final weights (trainer.keep_model final); "
                         "score it with --weights final or train into a new --out")
    scored = run_dir
    if weights == "final" and kept != "final":  # runs from before trainer.keep_model existed
        scored = run_dir / f"final_step{steps}"
        if not (scored / "model.keras").is_file():
            export_checkpoint(run_dir, steps, scored)
    t0 = time.perf_counter()
    metrics = evaluate_run(scored, str(data_dir), batch_size=batch_size, max_batches=eval_batches,
                           progress=progress)
    metrics.update({"arch": arch, "objective": objective, "seed": seed, "steps": steps, "train_seconds": train_s,
                    "weights": weights,
                    "eval_seconds": time.perf_counter() - t0, "load": _load(),
                    "budget_fraction": steps * batch_size / (PAPER_STEPS * 512), **schedule(steps)})
    (run_dir / "evaluation.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def to_markdown(results: list[dict], meta: dict) -> str:
    lines = ["# dMelodies benchmark (reduced budget)", "",
             f"Machine: {meta['machine']}. Date: {meta['date']}. Data: {meta['data']} (full dMelodies, "
             f"{meta['train_items']:,} train / {meta['test_items']:,} test items). Budget per model: "
             f"{meta['steps']} steps x batch {meta['batch_size']} = {100 * meta['fraction']:.2f} % of the "
             f"paper's 100 epochs x 1,853 steps (one seed; paper: 3 seeds x 3 hyperparameter values). "
             f"Initialization: {meta['init']}. Schedules compressed to the budget (module docstring). Metrics "
             f"C.9 on the test split, {meta['eval_points']:,} points, {meta.get('weights', 'best')} weights. Wall times depend on the machine's load "
             "(recorded per row); metrics do not.", "",
             "| architecture | method | MIG | modularity | SAP | recon. accuracy | train s | load (1/5/15 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['arch'].upper()} | {LABELS[r['objective']]} | {r['mig']:.3f} | {r['modularity']:.3f} | "
                     f"{r['sap']:.3f} | {r['reconstruction_accuracy']:.3f} | {r['train_seconds']:.0f} | {r['load']} |")
    lines += ["", PAPER_NOTE, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/experiment_dmelodies"))
    parser.add_argument("--data", type=Path, default=Path("data/dmelodies"),
                        help="dMelodies TFRecords (generated here when missing)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model (default 1500)")
    parser.add_argument("--batch-size", type=int, default=512, help="C.8: 512")
    parser.add_argument("--archs", default="cnn,rnn", help="comma-separated: cnn, rnn (default both)")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated: beta, annealed, factor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", choices=("keras", "xavier"), default="xavier")
    parser.add_argument("--eval-batches", type=int, default=201, help="C.9: 201 batches")
    parser.add_argument("--weights", choices=("final", "best"), default="final",
                        help="score the final checkpoint (default) or the run's lowest-validation-loss model")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    progress = not args.quiet and sys.stderr.isatty()
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if not archs or any(a not in ("cnn", "rnn") for a in archs):
        parser.error(f"--archs '{args.archs}': expected cnn and/or rnn")
    if not objectives or any(o not in OBJECTIVES for o in objectives):
        parser.error(f"--objectives '{args.objectives}': expected some of {', '.join(OBJECTIVES)}")
    if args.steps < 100:
        parser.error("--steps must be >= 100 (the schedules are cut into 100 'epochs')")
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_data(args.data, progress)

    results = []
    started = time.perf_counter()
    for arch in archs:
        for objective in objectives:
            print(f"== {arch.upper()} {objective}-VAE: {args.steps} steps (load {_load()})", flush=True)
            r = run_one(arch, objective, args.seed, args.data, args.out, args.steps, args.batch_size,
                        args.eval_batches, args.init, progress, args.weights)
            print("   " + ", ".join(f"{m}={r[m]:.3f}" for m in METRICS) + f" (train {r['train_seconds']:.0f} s)",
                  flush=True)
            results.append(r)
            _write(args, results, started)
    print((args.out / "experiment_dmelodies.md").read_text())
    return 0


def _meta(args, results: list[dict], started: float) -> dict:
    from tfmusic.training.vae import open_data

    data = open_data("dmelodies-cnn", args.data)
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "date": time.strftime("%Y-%m-%d %H:%M"),
            "data": str(args.data), "train_items": data.num_examples("train"), "test_items": data.num_examples("test"),
            "steps": args.steps, "batch_size": args.batch_size, "fraction": args.steps * args.batch_size / (PAPER_STEPS * 512),
            "init": args.init, "weights": args.weights, "eval_points": results[0]["num_points"] if results else 0,
            "wall_seconds": time.perf_counter() - started, "paper_steps": PAPER_STEPS, "paper_note": PAPER_NOTE}


def earlier_results(out: Path, steps: int, seed: int, done: list[dict], weights: str | None = None) -> list[dict]:
    """Scored runs already in ``out`` at the same budget and seed that this invocation did not redo, so
    the architectures can be run one call at a time and still land in one table."""
    have = {(r["arch"], r["objective"]) for r in done}
    found = []
    for arch in ("cnn", "rnn"):
        for objective in OBJECTIVES:
            path = out / f"{arch}_{objective}_seed{seed}" / "evaluation.json"
            if (arch, objective) in have or not path.is_file():
                continue
            r = json.loads(path.read_text())
            if r.get("steps") == steps and r.get("seed") == seed and weights in (None, r.get("weights", "best")):
                found.append(r)
    return found


def _write(args, results: list[dict], started: float) -> None:
    """Rewrite the table after every model, so a stopped run keeps what finished."""
    results = sorted(results + earlier_results(args.out, args.steps, args.seed, results, args.weights),
                     key=lambda r: (r["arch"], OBJECTIVES.index(r["objective"])))
    meta = _meta(args, results, started)
    slim = [{k: v for k, v in r.items() if k not in ("sap_scores",)} for r in results]
    (args.out / "experiment_dmelodies.json").write_text(json.dumps({"meta": meta, "runs": slim}, indent=2))
    (args.out / "experiment_dmelodies.md").write_text(to_markdown(results, meta))


if __name__ == "__main__":
    sys.exit(main())
