"""`tfmusic vae train|evaluate|traverse`: beta-, Annealed-, Factor- and AR-VAE on dMelodies, folk measures
and images (see tfmusic.training.vae and tfmusic.models.vae)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tfmusic.cli.main import CliError
from tfmusic.cli.train import parse_step_range

MODELS = ("dmelodies-rnn", "dmelodies-cnn", "measure", "sprites", "mnist")
OBJECTIVES = ("beta", "annealed", "factor", "ar")


TRAIN_EPILOG = """\
Configuration is resolved in this order (later wins): the defaults of --model / --objective,
--config FILE (YAML or JSON, same nesting as config.json), the flags above, then --set KEY=VALUE.
`--print-config` shows the result without training. trainer.steps, trainer.eval_every and
vae.steps_per_epoch stay null until the data is open (epochs x steps per epoch, once per epoch,
train examples / batch size); RUN/config.json holds the finalized values. vae.seed seeds the
model and its schedules, trainer.seed the data order (--seed sets both). With --resume give the
same flags (or the run's config.json as --config) and raise --steps to train longer.
"""


def _int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise CliError(f"'{text}': expected comma-separated integers, e.g. 0,1,2,3") from None


def _quiet(args) -> bool:
    return bool(getattr(args, "quiet", False)) or not sys.stderr.isatty()


# flag -> dotted config key (tfmusic.training.vae_config); None flags are not part of the flag layer
FLAG_KEYS = {
    "data": "data_dir", "limit": "limit", "epochs": "epochs", "steps": "trainer.steps",
    "batch_size": "trainer.batch_size", "lr": "vae.learning_rate", "beta": "vae.beta", "capacity": "vae.capacity",
    "gamma": "vae.gamma", "delta": "vae.delta", "warmup_epochs": "vae.warmup_epochs",
    "ramp_iterations": "vae.ramp_iterations", "steps_per_epoch": "vae.steps_per_epoch", "z_dim": "vae.z_dim",
    "hidden": "vae.hidden", "init": "vae.init", "teacher_forcing": "vae.teacher_forcing", "eval_every": "trainer.eval_every",
    "eval_steps": "trainer.eval_steps", "strategy": "trainer.strategy", "profile_steps": "trainer.profile_steps",
}


def _flag_layer(args: argparse.Namespace) -> dict:
    """The command-line flags as one config layer (only the flags given)."""
    from tfmusic.training.config import set_dotted
    from tfmusic.training.strategies import parse_devices

    layer: dict = {}
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            set_dotted(layer, key, str(Path(value)) if attr == "data" else value)
    for attr in ("reg_dims", "reg_columns"):
        if getattr(args, attr) is not None:
            set_dotted(layer, f"vae.{attr}", _int_list(getattr(args, attr)))
    if args.seed is not None:  # one flag seeds both the model (vae.seed) and the data order (trainer.seed)
        set_dotted(layer, "vae.seed", args.seed)
        set_dotted(layer, "trainer.seed", args.seed)
    if args.devices is not None:
        set_dotted(layer, "trainer.devices", parse_devices(args.devices))
    for flag in ("deterministic", "histograms"):
        if getattr(args, flag):
            set_dotted(layer, f"trainer.{flag}", True)
    return layer


def _resolve(args: argparse.Namespace):
    """Defaults -> --config -> flags -> --set, as for `tfmusic train` (tfmusic.training.vae_config)."""
    from tfmusic.training.config import ConfigError, command_line_layers
    from tfmusic.training.vae_config import resolve_config

    try:
        layers = command_line_layers(args.config, _flag_layer(args), args.assignments)
        return resolve_config(args.model, args.objective, layers)
    except ConfigError as err:
        raise CliError(str(err)) from None


def _train(args: argparse.Namespace) -> int:
    from tfmusic.training.config import to_dict
    from tfmusic.training.rundir import check_run_dir

    if args.out is not None:
        try:
            check_run_dir(args.out)
        except ValueError as err:
            raise CliError(str(err)) from None
    config = _resolve(args)
    if args.print_config:
        print(json.dumps(to_dict(config), indent=2))
        return 0
    if args.out is None:
        raise CliError("--out is required (the run directory to create or --resume)")
    # The strategy first: logical devices and multi-worker setup need an uninitialised runtime.
    from tfmusic.training.strategies import make_strategy

    try:
        strategy = make_strategy(config.trainer.strategy, config.trainer.devices)
    except (ValueError, RuntimeError) as err:
        raise CliError(str(err)) from None
    from tfmusic.training.vae import open_data, train_vae

    try:
        data = open_data(config.vae.model, config.data_dir, limit=config.limit, seed=config.vae.seed)
        result = train_vae(config, data, args.out, strategy=strategy, resume=args.resume, progress=not args.quiet)
    except (ValueError, FileExistsError) as err:
        raise CliError(str(err)) from None
    last = result.history[-1]["eval"] if result.history else {}
    print(f"trained {args.model} / {args.objective}: {result.step} steps -> {result.model_path}")
    if last:
        keys = [k for k in ("loss", "recon", "accuracy", "kl") if k in last]
        print("  last evaluation: " + ", ".join(f"{k}={last[k]:.4g}" for k in keys))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from tfmusic.training.vae import evaluate_run

    try:
        metrics = evaluate_run(args.run, args.data, split=args.split, batch_size=args.batch_size,
                               max_batches=args.max_batches or None, limit=args.limit, progress=not _quiet(args))
    except ValueError as err:
        raise CliError(str(err)) from None
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2))
    keys = [k for k in ("interpretability", "mig", "sap", "scc", "modularity", "reconstruction_accuracy")
            if k in metrics]
    print(", ".join(f"{k}={metrics[k]:.4g}" for k in keys) + f"  ({metrics['num_points']} points)")
    print(f"wrote {out}")
    return 0


def _traverse(args: argparse.Namespace) -> int:
    import numpy as np

    from tfmusic.models.vae.presets import family_of
    from tfmusic.music.traversal import data_limits, write_traversal
    from tfmusic.training.vae import EVAL_SPLITS, load_run, open_data

    try:
        vae, meta = load_run(args.run)
    except ValueError as err:
        raise CliError(str(err)) from None
    model = meta["vae"]["model"]
    family = family_of(model)
    if not 0 <= args.dim < vae.z_dim:
        raise CliError(f"--dim {args.dim} is outside the run's {vae.z_dim}-dim latent space")
    data_dir = args.data or meta["data"].get("dir")
    x = None
    if family == "image" or data_dir:
        try:
            data = open_data(model, data_dir, limit=args.limit)
            batch = next(iter(data.dataset(EVAL_SPLITS[family][1], max(args.index + 1, 256))))
        except (ValueError, FileNotFoundError) as err:
            raise CliError(f"cannot read traversal inputs: {err}") from None
        xs = np.asarray(batch[0])
        if args.index >= len(xs):
            raise CliError(f"--index {args.index}: the split has only {len(xs)} items in its first batch")
        x = xs[args.index:args.index + 1]
    if args.range == "auto":
        if x is None:
            low, high = -4.0, 4.0
        else:
            low, high = data_limits(vae, xs, args.dim)
    else:
        try:
            low, high = (float(v) for v in args.range.split(","))
        except ValueError:
            raise CliError(f"--range '{args.range}': expected 'auto' or LOW,HIGH (e.g. -4,4)") from None
    values = np.linspace(low, high, args.steps)
    try:
        from tfmusic.data.codecs import codec_for

        result = write_traversal(vae, codec_for(family), args.dim, values, args.out, x=x, attribute=args.attribute,
                                 engrave=not args.no_engrave)
    except ValueError as err:
        raise CliError(str(err)) from None
    (Path(args.out) / f"traversal_dim{args.dim:02d}.json").write_text(json.dumps(result, indent=2))
    origin = f"item {args.index} of the {EVAL_SPLITS[family][1]} split" if x is not None else "the prior mean"
    print(f"z[{args.dim}] from {low:+.3g} to {high:+.3g} in {args.steps} steps around {origin}:")
    for kind, path in result["files"].items():
        print(f"  {kind:<14} {path if path else '(skipped)'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("vae", help="train / evaluate / traverse latent-space VAEs (beta, Annealed, Factor, AR)",
                              description="Latent-space models: one Keras VAE core with beta-VAE, Annealed-VAE, "
                              "Factor-VAE and AR-VAE objectives on dMelodies, folk measures and images.")
    sub = p.add_subparsers(dest="vae_command", metavar="SUBCOMMAND")

    t = sub.add_parser("train", help="train one VAE run through the tfmusic trainer",
                       description="Train a VAE. Defaults follow the reference spec: dMelodies (C.7/C.8: batch 512, "
                       "100 epochs, beta-VAE hinge C=50 with beta warm-up, AR with delta 10 on dims 0-8), folk "
                       "measures (B.2: batch 256, 30 epochs, beta 0.001, AR gamma 1 delta 10 on dims 0-3), images "
                       "(B.2: batch 128, 100 epochs). Writes RUN/{config.json,vae.json,checkpoints/,tensorboard/,"
                       "history.json,model.keras}.",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--model", required=True, choices=MODELS, help="architecture")
    t.add_argument("--objective", required=True, choices=OBJECTIVES, help="loss")
    t.add_argument("--data", help="dataset directory (dMelodies or measures TFRecords); images are procedural")
    t.add_argument("--out", help="run directory to create (or --resume); required unless --print-config")
    t.add_argument("--config", help="YAML or JSON config file (see --print-config for every key)")
    t.add_argument("--epochs", type=float, help="training length in epochs (default 100 dMelodies and images, "
                   "30 measures)")
    t.add_argument("--steps", type=int, help="training length in optimizer steps (overrides --epochs; trainer.steps)")
    t.add_argument("--batch-size", type=int, help="global batch size (default 512 dMelodies, 256 measures, 128 "
                   "images, 1024 dSprites Factor-VAE)")
    t.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    t.add_argument("--beta", type=float, help="KL weight (target of the warm-up ramp for dMelodies beta-VAE)")
    t.add_argument("--capacity", type=float, help="KL capacity C (annealing target for Annealed-VAE)")
    t.add_argument("--gamma", type=float, help="AR-VAE / Factor-VAE weight")
    t.add_argument("--delta", type=float, help="AR-VAE tanh sharpness")
    t.add_argument("--warmup-epochs", type=int,
                   help="last epoch with beta = 0 before the ramp (spec: 10; -1 = no warm-up)")
    t.add_argument("--ramp-iterations", type=float,
                   help="iterations of the exponential beta / capacity ramp (default 1e5, the spec's)")
    t.add_argument("--steps-per-epoch", type=int, help="override the epoch length used by the schedules "
                   "(default: train examples / batch size)")
    t.add_argument("--z-dim", type=int, help="latent size (default 32 music, 10 dSprites, 16 MNIST)")
    t.add_argument("--hidden", type=int, help="RNN width override (small demos)")
    t.add_argument("--init", choices=("keras", "xavier"),
                   help="weight initialization: Keras defaults or the references' Xavier-normal with zero biases "
                   "(default xavier)")
    t.add_argument("--teacher-forcing", type=float, help="per-batch teacher-forcing probability (default 0.5)")
    t.add_argument("--reg-dims", help="AR-VAE: latent dims to regularize, e.g. 0,1,2,3")
    t.add_argument("--reg-columns", help="AR-VAE: attribute column for each regularized dim (default 0..n-1)")
    t.add_argument("--limit", type=int, help="dSprites: use only the first N items of each split")
    t.add_argument("--eval-every", type=int, help="evaluate every N steps (default: once per epoch)")
    t.add_argument("--eval-steps", type=int, help="evaluation batches (default 20)")
    t.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                   help="tf.distribute strategy (default: default)")
    t.add_argument("--devices", help="device count (e.g. 2 logical CPUs) or names for --strategy mirrored")
    t.add_argument("--seed", type=int, help="seed of the weights, schedules and data order (vae.seed and "
                   "trainer.seed; default 0)")
    t.add_argument("--deterministic", action="store_true", help="deterministic input pipeline and TF ops")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. vae.disc_learning_rate=2e-4 or trainer.log_every=50 (repeatable)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    t.add_argument("--histograms", action="store_true",
                   help="TensorBoard weight and activation histograms at each evaluation")
    t.add_argument("--profile-steps", type=parse_step_range, metavar="START,END",
                   help="tf.profiler trace of training steps START..END (TensorBoard's Profile tab)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=_train)

    e = sub.add_parser("evaluate", help="disentanglement metrics and reconstruction accuracy of a run",
                       description="Encode the evaluation split (sampled z, up to --max-batches batches) and write "
                       "JSON: dMelodies -> MIG, modularity, SAP on the factors (C.9); measures / images -> "
                       "interpretability, MIG, modularity, SAP, SCC on the attributes (B.6); plus reconstruction "
                       "accuracy (argmax, no teacher forcing).")
    e.add_argument("run", help="run directory written by `tfmusic vae train`")
    e.add_argument("--data", help="dataset directory (default: the one the run was trained on)")
    e.add_argument("--split", help="split to evaluate (default: test, the held-out split of every family; measures: tune-level, training duplicates dropped)")
    e.add_argument("--batch-size", type=int, help="default: the family's training batch size")
    e.add_argument("--max-batches", type=int, default=201, help="batches to encode (spec: 201; 0 = all)")
    e.add_argument("--limit", type=int, help="dSprites: first N items of the split")
    e.add_argument("--out", help="JSON path (default RUN/evaluation.json)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(handler=_evaluate)

    r = sub.add_parser("traverse", help="decode a sweep along one latent dim and render it",
                       description="Sweep one latent dim around an evaluation item's posterior mean (or the prior "
                       "mean without data) and write a piano-roll PNG with the recomputed attribute beside each "
                       "row, MusicXML and MIDI (music), a LilyPond-engraved PNG when lilypond is installed, or an "
                       "image grid (images).")
    r.add_argument("run", help="run directory written by `tfmusic vae train`")
    r.add_argument("--dim", type=int, required=True, help="latent dim to sweep")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--data", help="dataset directory for the starting item (default: the run's)")
    r.add_argument("--index", type=int, default=0, help="which evaluation item to start from")
    r.add_argument("--range", default="auto",
                   help="'auto' (min..max of the dim's posterior means over 256 items, as in the "
                   "controllability study) or LOW,HIGH")
    r.add_argument("--steps", type=int, default=8, help="number of points in the sweep")
    r.add_argument("--attribute", type=int, help="attribute column shown beside each row (default: the dim's)")
    r.add_argument("--limit", type=int, help="dSprites: first N items of the split")
    r.add_argument("--no-engrave", action="store_true", help="skip the LilyPond engraving")
    r.set_defaults(handler=_traverse)
    p.set_defaults(handler=lambda args: (p.print_help(), 1)[1])
