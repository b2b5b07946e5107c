"""`tfmusic convert`: bring models trained elsewhere into tfmusic."""

from __future__ import annotations

import argparse

from tfmusic.cli.main import CliError

OPENUNMIX_HELP = """\
Convert an Open-Unmix model folder - the layout openunmix's training writes and `umx --model DIR`
reads: separator.json, <target>.json and <target>.pth per target - into one tfmusic Separator
(.keras) that `tfmusic separate --model`, `tfmusic evaluate` and `tfmusic export` take. Weights are
copied exactly (LSTM biases, BatchNorm statistics, input/output scaling); no Wiener filtering.
Reading .pth files needs PyTorch: pip install 'tfmusic[torch]' (loaded with weights_only=True).

examples:
  tfmusic convert openunmix umx_model/ --out models/umx.keras
  tfmusic convert openunmix umx_model/ --targets vocals,drums --out models/umx_vd.keras
"""


def _openunmix(args: argparse.Namespace) -> int:
    from tfmusic.models.umx_convert import convert_openunmix_folder

    targets = [t for t in args.targets.split(",") if t] if args.targets else None
    if not args.out.endswith(".keras"):
        raise CliError(f"--out {args.out}: the separator is saved as a .keras file")
    try:
        separator = convert_openunmix_folder(args.folder, targets)
    except FileNotFoundError as err:
        raise CliError(f"{err.filename}: {err.strerror}" if err.filename else str(err)) from None
    except (ValueError, ImportError) as err:
        raise CliError(str(err)) from None
    import os

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    separator.save(args.out)
    if not args.quiet:
        print(f"{args.out}: Open-Unmix separator with targets {', '.join(separator.target_names)} "
              f"(n_fft {separator.n_fft}, hop {separator.hop_length})")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert models trained elsewhere (Open-Unmix folders)")
    sub = parser.add_subparsers(dest="convert_command", metavar="FORMAT", required=True)
    umx = sub.add_parser("openunmix", help="Open-Unmix model folder -> tfmusic Separator (.keras)",
                         description=OPENUNMIX_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    umx.add_argument("folder", help="folder with separator.json, <target>.json, <target>.pth")
    umx.add_argument("--out", required=True, help="output .keras file")
    umx.add_argument("--targets", help="comma-separated subset of targets (default: every <target>.json)")
    umx.add_argument("--quiet", action="store_true", help="print nothing on success")
    umx.set_defaults(handler=_openunmix)
