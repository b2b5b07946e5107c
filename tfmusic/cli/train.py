"""``tfmusic train iass|umx``: train a separation model with the one tf.distribute trainer."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

EPILOG = """\
Configuration is resolved in this order (later wins): model defaults, the run directory's
config.json (with --resume), --config FILE (YAML or JSON, same nesting as config.json), the
flags above, then --set KEY=VALUE. `--print-config` shows the result without training.

Run directory: config.json (resolved config), config.yaml (copy of a YAML --config; a JSON one is
kept as config.source.json), checkpoints/
(latest + best/), tensorboard/ (train and eval scalars incl. steps/s, examples/s, grad_norm/*, audio,
spectrogram images, the step graph, --histograms, --profile-steps; the HParams session), history.json
(one record per evaluation) and model.keras (best weights), which `tfmusic separate` loads.

Scheduling: one evaluation every --eval-every steps is the unit of plateau / early-stopping
patience (trainer.plateau.{factor,patience,cooldown,min_lr}, trainer.early_stopping.patience).

Examples:
  tfmusic train iass --data stems/ --target vocals --steps 2000 --batch-size 16
  tfmusic train umx --data stems/ --target drums --config umx.yaml --strategy mirrored --devices 2
  tfmusic train iass --data stems/ --target vocals --run-dir runs/v1 --resume --steps 4000
  TF_CONFIG='{"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 0}}' \\
      tfmusic train iass --data /shared/stems --target vocals --strategy multiworker --run-dir /shared/runs/v1
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an IASS or Open-Unmix separation model (tf.distribute custom loop)",
        description="Train one separation model for one target on preprocessed stems "
        "(`tfmusic data preprocess`). Works on one device, several local devices (mirrored) "
        "or several machines (multiworker), with checkpoints, resume, early stopping, "
        "reduce-on-plateau, mixed precision and TensorBoard.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", choices=("iass", "umx", "iass_pitch"),
                        help="iass: activity-aware U-Net (mono); umx: Open-Unmix (stereo); iass_pitch: IASS with a "
                        "multi-pitch head (needs pitch-labelled stems, e.g. synthesized songs)")
    parser.add_argument("--data", help="preprocessed stems folder (output of `tfmusic data preprocess`)")
    parser.add_argument("--target", help="instrument to separate, e.g. vocals, drums, bass, piano (default vocals)")
    parser.add_argument("--config", help="YAML or JSON config file (see --print-config for every key)")
    parser.add_argument("--run-dir", help="output folder (default runs/<model>-<target>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its latest checkpoint (same data order, "
                        "optimizer state, schedules); raise --steps to train longer")
    parser.add_argument("--steps", type=int, help="total optimizer steps (trainer.steps)")
    parser.add_argument("--batch-size", type=int, help="global batch size, split over replicas (trainer.batch_size)")
    parser.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    parser.add_argument("--segment-seconds", type=float, help="training excerpt length (default 6)")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (trainer.eval_every)")
    parser.add_argument("--eval-steps", type=int, help="batches per evaluation (trainer.eval_steps)")
    parser.add_argument("--no-eval", action="store_true", help="no evaluation split (no plateau / early stopping)")
    parser.add_argument("--stats-batches", type=int, help="batches for the input statistics (default 32)")
    parser.add_argument("--pitch-weight", type=float, help="iass_pitch: weight of the pitch loss (default 1; "
                        "its class weighting and focal exponent: --set pitch_pos_weight=..., pitch_focal_gamma=...)")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                        help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    parser.add_argument("--devices", help="mirrored: a device count (GPUs, or logical CPUs when there is no "
                        "GPU) or names such as /gpu:0,/gpu:1")
    parser.add_argument("--mixed-precision", nargs="?", const="mixed_float16",
                        choices=("float32", "mixed_float16", "mixed_bfloat16", "auto"),
                        help="Keras mixed precision policy (flag alone: mixed_float16, with loss scaling; auto: "
                        "mixed_bfloat16 on CPUs with AVX512_BF16/AMX and GPUs >= sm_80, else float32)")
    parser.add_argument("--jit-compile", action="store_true",
                        help="XLA-compile the training step (trainer.jit_compile; one replica only)")
    parser.add_argument("--steps-per-execution", type=int, metavar="N",
                        help="optimizer steps per graph call, fewer host round trips (trainer.steps_per_execution)")
    parser.add_argument("--seed", type=int, help="seed of weights and data order (default 42)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic data pipeline and TF ops (exactly reproducible resumes)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, e.g. trainer.plateau.patience=5 or model_kwargs.hidden_size=64 "
                        "(repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--histograms", action="store_true",
                        help="TensorBoard weight and activation histograms at each evaluation (trainer.histograms)")
    parser.add_argument("--profile-steps", type=parse_step_range, metavar="START,END",
                        help="capture a tf.profiler trace of training steps START..END (1-based) into "
                        "tensorboard/train (TensorBoard's Profile tab; trainer.profile_steps)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_train)


def parse_step_range(text: str) -> list[int]:
    """``"5,8"`` -> ``[5, 8]`` (argparse type for --profile-steps)."""
    try:
        start, end = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START,END, e.g. 5,8") from None
    if not 1 <= start <= end:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= START <= END")
    return [start, end]


def _flag_layer(args: argparse.Namespace) -> dict:
    from tfmusic.training.config import set_dotted
    from tfmusic.training.strategies import parse_devices

    layer: dict = {}
    mapping = {
        "data": "data_dir", "target": "target", "steps": "trainer.steps", "batch_size": "trainer.batch_size",
        "lr": "learning_rate", "segment_seconds": "segment_seconds", "eval_every": "trainer.eval_every",
        "eval_steps": "trainer.eval_steps", "stats_batches": "stats_batches", "strategy": "trainer.strategy",
        "mixed_precision": "trainer.mixed_precision", "seed": "trainer.seed",
        "steps_per_execution": "trainer.steps_per_execution",
        "profile_steps": "trainer.profile_steps", "pitch_weight": "pitch_weight",
    }
    for attr, key in mapping.items():
        value = getattr(args, attr)
        if value is not None:
            set_dotted(layer, key, str(Path(value)) if attr == "data" else value)
    if args.devices is not None:
        set_dotted(layer, "trainer.devices", parse_devices(args.devices))
    if args.deterministic:
        set_dotted(layer, "trainer.deterministic", True)
    if args.histograms:
        set_dotted(layer, "trainer.histograms", True)
    if args.jit_compile:
        set_dotted(layer, "trainer.jit_compile", True)
    if args.no_eval:
        set_dotted(layer, "eval_split", None)
    return layer


def run_train(args: argparse.Namespace) -> int:
    from tfmusic.cli.main import CliError
    from tfmusic.training.config import ConfigError, command_line_layers, load_config_file
    from tfmusic.training.separation import resolve_config, run_config_dict

    if args.model == "iass_pitch":
        from tfmusic.training.separation_pitch import resolve_config, run_config_dict  # noqa: F811
    elif args.pitch_weight is not None:
        raise CliError("--pitch-weight applies to iass_pitch only")

    from tfmusic.training.rundir import check_run_dir

    if args.run_dir:
        try:
            check_run_dir(args.run_dir)
        except ValueError as err:
            raise CliError(str(err)) from None
    run_dir = Path(args.run_dir) if args.run_dir else None
    layers: list[tuple[str, dict]] = []
    try:
        if args.resume:
            if run_dir is None:
                raise CliError("--resume needs --run-dir (the run to continue)")
            saved = run_dir / "config.json"
            if not saved.is_file():
                raise CliError(f"{saved}: not found; nothing to resume (train without --resume first)")
            layers.append((str(saved), load_config_file(saved)))
        layers += command_line_layers(args.config, _flag_layer(args), args.assignments)
        config = resolve_config(args.model, layers)
    except ConfigError as err:
        raise CliError(str(err)) from None

    if args.print_config:
        print(json.dumps(run_config_dict(config), indent=2))
        return 0
    if not config.data_dir:
        raise CliError("--data is required (a folder written by `tfmusic data preprocess`)")
    data_dir = Path(config.data_dir)
    if not (data_dir / "manifest.json").is_file():
        raise CliError(f"{data_dir}: no manifest.json; expected the output folder of `tfmusic data preprocess`")
    if run_dir is None:
        run_dir = Path("runs") / f"{config.model}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.resume and (run_dir / "checkpoints" / "checkpoint").exists():
        raise CliError(f"{run_dir}: already holds a training run; add --resume to continue it or pick another --run-dir")

    # The strategy first: logical devices and multi-worker setup need an uninitialised runtime.
    from tfmusic.training.strategies import is_chief, make_strategy

    try:
        strategy = make_strategy(config.trainer.strategy, config.trainer.devices)
    except (ValueError, RuntimeError) as err:
        raise CliError(str(err)) from None

    from tfmusic.training.separation import SeparationTask
    from tfmusic.training.trainer import Trainer

    if is_chief(strategy):
        run_dir.mkdir(parents=True, exist_ok=True)
        if args.config:
            suffix = Path(args.config).suffix.lower()
            copy_name = "config.yaml" if suffix in (".yaml", ".yml") else "config.source.json"
            shutil.copyfile(args.config, run_dir / copy_name)
    if args.model == "iass_pitch":
        from tfmusic.training.separation_pitch import PitchSeparationTask as SeparationTask  # noqa: F811
    task = SeparationTask(config)
    trainer = Trainer(task, config.trainer, run_dir, strategy=strategy, resume=args.resume,
                      run_config=run_config_dict(config), progress=not args.quiet)
    try:
        result = trainer.fit()
    except (ValueError, FileExistsError, KeyError) as err:
        raise CliError(str(err)) from None
    if not is_chief(strategy):
        return 0
    calibrate = getattr(task, "calibrate_threshold", None)  # IASS: gate (and pitch) thresholds, stored in the model
    chosen = calibrate(result.model_path) if calibrate is not None and result.model_path else None
    last = result.history[-1]["eval"] if result.history else {}
    lines = [
        f"run directory: {result.run_dir}",
        f"steps: {result.start_step} -> {result.step}" + (" (early stopping)" if result.stopped_early else ""),
    ]
    if result.best_step is not None:
        lines.append(f"best eval {config.trainer.monitor}: {result.best_metric:.6g} at step {result.best_step}")
    if last:
        lines.append("last eval: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
    gate, pitch = (chosen or {}).get("activity"), (chosen or {}).get("pitch")
    if gate:
        lines.append(f"activity threshold: {gate['threshold']:.2f} (gated squared error {gate['squared_error']:.4g} "
                     f"on the {gate['split']} split; {gate['squared_error_at_0.5']:.4g} at 0.5)")
    if pitch:
        lines.append(f"pitch threshold: {pitch['threshold']:.2f} (frame F1 {pitch['f1']:.3f} on the "
                     f"{pitch['split']} split; {pitch['f1_at_0.5']:.3f} at 0.5)")
    lines.append(f"model: {result.model_path}")
    print("\n".join(lines), file=sys.stdout)
    return 0
