"""The one `tfmusic` command line.

Each area of the library contributes a module in ``tfmusic.cli`` with a ``register(subparsers)``
function that adds its subcommands. Handlers import heavy libraries (TensorFlow, Beam) lazily,
so ``tfmusic --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "dmelodies",
    "data",
    "train",
    "separate",
    "evaluate",
    "vae",
    "datasets",
    "export",
    "convert",
    "models",
    "serve",
    "demo",
)


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfmusic",
        description="Music ML with TensorFlow/Keras: dMelodies, multitrack data, IASS/Open-Unmix "
        "separation, AR-VAE latent spaces, export and serving.",
    )
    parser.add_argument("--version", action="version", version=f"tfmusic {package_version()}")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="what to log on stderr (default warning; debug also shows TensorFlow's "
                        "native log lines)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per line on stderr (time, level, logger, message)")
    parser.add_argument("-v", "--verbose", action="store_true", help="same as --log-level info")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tfmusic.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"tfmusic.cli.{name}":
                continue  # area not present in this build
            raise
        module.register(subparsers)
    return parser


def package_version() -> str:
    """The installed distribution's version (what pip sees), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tfmusic")
    except PackageNotFoundError:
        from tfmusic import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    from tfmusic import logs

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    level = args.log_level or ("info" if args.verbose else "warning")
    # before any handler runs, i.e. before TensorFlow is imported
    logs.configure(level, args.log_format, override_env=args.log_level is not None or args.verbose)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "accepts_extra_args", False):
        args.extra_args = extra
    try:
        return int(args.handler(args) or 0)
    except CliError as err:
        print(f"tfmusic {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        detail = err.strerror if err.strerror and err.strerror != "No such file or directory" else "file not found"
        print(f"tfmusic {args.command}: error: {err.filename or err}: {detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
