"""`tfmusic export`: trained runs -> TF Serving SavedModels, and SavedModels -> ONNX."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SAVED_MODEL_HELP = """\
Export trained runs as one SavedModel version <repo>/<name>/<version>/ for TF Serving (and
`tfmusic serve`), with explicit signatures, warmup requests, and validation (signatures, no
denylisted ops, outputs equal to the Keras model's) before the version appears.

Separation: give one --model per target (training run directories or .keras files, as for
`tfmusic separate`); signatures serving_default (waveform -> one stem per target) and activity.
VAE: give one VAE run directory (holding vae.json); signatures encode, decode, traverse.

examples:
  tfmusic export saved-model --model runs/iass_vocals --model runs/umx_drums --repo models --name separator
  tfmusic export saved-model --model runs/vae_dmelodies --repo models --name dmelodies_vae --version 3
"""

ONNX_HELP = """\
Convert a SavedModel version (or the latest version of a model folder) to ONNX with tf2onnx,
then check it in ONNX Runtime against the SavedModel on fresh random inputs (max |diff| <= 1e-4
of the output scale) - the export fails otherwise. Separators export serving_default (waveform ->
stems); VAEs export encode and decode as OUT_STEM.encode.onnx / OUT_STEM.decode.onnx.

examples:
  tfmusic export onnx --saved-model models/separator/1 --out separator.onnx
  tfmusic export onnx --saved-model models/separator --out sep.onnx --precision int8 --precision fp16
  tfmusic separate song.wav --backend onnx --model separator.onnx     # runs without TensorFlow

Separators: the STFT bases are rebuilt in the graph (not stored), so the file is about the size of
the weights. Variants are checked against the fp32 ONNX (int8: max |diff|/scale <= 0.25, fp16:
<= 0.02); see bench/bench_onnx_edge.py for their speed and SDR on songs.
"""


def _is_vae_run(path: str) -> bool:
    return (Path(path) / "vae.json").is_file()


def run_saved_model(args: argparse.Namespace) -> int:
    from tfmusic.cli.main import CliError
    from tfmusic.export.saved_model import ExportError, export_separator, export_vae

    if not args.model:
        raise CliError("give at least one --model (training run directory or .keras file)")
    for path in args.model:
        if not Path(path).exists():
            raise CliError(f"{path}: no such run directory or model file")
    try:
        if any(_is_vae_run(p) for p in args.model):
            if len(args.model) != 1:
                raise CliError("a VAE export takes exactly one --model run directory")
            from tfmusic.training.vae import load_run

            model, _ = load_run(args.model[0])
            path, report = export_vae(model, args.repo, args.name, args.version, overwrite=args.overwrite)
        else:
            from tfmusic.models.separator import load_separator

            separator = load_separator(args.model, targets=args.targets, wiener_iterations=args.wiener_iterations)
            path, report = export_separator(separator, args.repo, args.name, args.version, channels=args.channels,
                                            samples=args.samples, overwrite=args.overwrite)
    except (ExportError, ValueError) as err:
        raise CliError(str(err)) from err
    summary = {"path": str(path), "signatures": {k: {"inputs": v["inputs"], "outputs": v["outputs"]}
                                                 for k, v in report.signatures.items()},
               "max_rel_diff_vs_keras": report.max_rel_diff}
    print(json.dumps(summary, indent=2, default=list))
    return 0


def run_onnx(args: argparse.Namespace) -> int:
    from tfmusic.cli.main import CliError
    from tfmusic.export.onnx import OnnxExportError, export_onnx
    from tfmusic.export.saved_model import ExportError, resolve_version_dir

    from tfmusic.export.onnx_precision import PrecisionError, make_variant

    precisions = sorted(set(args.precision or ["fp32"]) - {"fp32"})
    try:
        version_dir = resolve_version_dir(args.saved_model)
        results = export_onnx(version_dir, args.out, args.signature, opset=args.opset, check=not args.no_check)
        variants = [make_variant(r.path, p, check=not args.no_check) for r in results for p in precisions]
    except (ExportError, OnnxExportError, PrecisionError) as err:
        raise CliError(str(err)) from err
    for r in results:
        check = "not checked" if args.no_check else f"max |diff|/scale vs SavedModel {r.max_rel_diff:.2e}"
        print(f"{r.path}: signature {r.signature}, opset {r.opset}, {r.inputs} -> {r.outputs}, "
              f"{r.path.stat().st_size / 1e6:.1f} MB, {check}", file=sys.stdout)
    for v in variants:
        check = "not checked" if args.no_check else f"max |diff|/scale vs fp32 ONNX {v.max_rel_diff:.2e}"
        print(f"{v.path}: {v.precision}, {v.bytes / 1e6:.1f} MB, {check}", file=sys.stdout)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export runs as TF Serving SavedModels, or SavedModels as ONNX",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="export_command", metavar="FORMAT")

    sm = sub.add_parser("saved-model", help="trained run(s) -> <repo>/<name>/<version>/ SavedModel",
                        description=SAVED_MODEL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sm.add_argument("--model", action="append", metavar="RUN",
                    help="training run directory or .keras file (repeat once per separation target)")
    sm.add_argument("--repo", required=True, metavar="DIR", help="model repository root (TF Serving base folder)")
    sm.add_argument("--name", required=True, help="model name: the folder under --repo and the name clients ask for")
    sm.add_argument("--version", type=int, default=None,
                    help="version number (default: one above the highest existing version)")
    sm.add_argument("--targets", type=lambda s: [t.strip() for t in s.split(",") if t.strip()], metavar="A,B",
                    help="separation targets to keep / names for unnamed models (as in tfmusic separate)")
    sm.add_argument("--channels", type=int, default=2, help="waveform channels the signature takes (default 2)")
    sm.add_argument("--samples", type=int, default=None,
                    help="fix the waveform length of the separation signature (multiple of 1024; clients then "
                         "send chunks of exactly this length); default: any length")
    sm.add_argument("--wiener-iterations", type=int, default=0, help="bake Wiener EM post-filtering into the graph")
    sm.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    sm.set_defaults(handler=run_saved_model)

    ox = sub.add_parser("onnx", help="SavedModel -> ONNX (tf2onnx) with a parity check in ONNX Runtime",
                        description=ONNX_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ox.add_argument("--saved-model", required=True, metavar="DIR",
                    help="SavedModel version folder, or a model folder (its latest version is used)")
    ox.add_argument("--out", required=True, metavar="FILE.onnx", help="output file")
    ox.add_argument("--signature", action="append", metavar="NAME",
                    help="signature(s) to convert (default: serving_default; encode+decode for VAEs)")
    ox.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; tf2onnx 1.17 accepts 13-18)")
    ox.add_argument("--precision", action="append", choices=["fp32", "fp16", "int8"],
                    help="also write reduced-precision variants beside --out (OUT_STEM.int8.onnx: dynamic int8 "
                         "quantization; OUT_STEM.fp16.onnx: fp16 for GPU providers, needs tfmusic[edge]); "
                         "repeatable; the fp32 file is always written as their reference")
    ox.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity checks")
    ox.set_defaults(handler=run_onnx)

    def no_format(args: argparse.Namespace) -> int:
        parser.print_help()
        return 1

    parser.set_defaults(handler=no_format)
