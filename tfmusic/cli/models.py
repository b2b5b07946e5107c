"""`tfmusic models list|info`: the separation models that ship with tfmusic.

  tfmusic models list              one line per model: name, target, architecture, default, size, scores
  tfmusic models info iass_drums   its registry entry (sha256 checked) and its model card
"""

from __future__ import annotations

import argparse
import json

from tfmusic.cli.main import CliError


def _scores(entry: dict) -> str:
    scores = entry.get("scores") or {}
    def value(k: str, v) -> str:
        if not isinstance(v, float):
            return str(v)
        return f"{v:+.2f}" if "over" in k else (f"{v:.3f}" if "F1" in k else f"{v:.2f}")

    return ", ".join(f"{k} {value(k, v)}" for k, v in scores.items()) or "-"


def run_list(args: argparse.Namespace) -> int:
    from tfmusic.models import pretrained

    models = pretrained.registry()
    if args.json:
        print(json.dumps(models, indent=1))
        return 0
    if not models:
        print("no models ship with this installation")
        return 0
    rows = [("name", "target", "architecture", "default", "MB", "steps", "scores (median SDR dB, F1)")]
    for name, e in models.items():
        rows.append((name, e["target"], e["architecture"], "yes" if e.get("default") else "", f"{e['bytes'] / 2**20:.1f}",
                     str(e.get("steps", "?")), _scores(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def run_info(args: argparse.Namespace) -> int:
    from tfmusic.models import pretrained

    try:
        entry = pretrained.info(args.name)
        path = pretrained.model_path(args.name)
    except pretrained.PretrainedError as err:
        raise CliError(str(err)) from err
    print(json.dumps({**entry, "path": str(path), "sha256_checked": True}, indent=1))
    text = pretrained.card(args.name)
    if text:
        print("\n" + text)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the shipped separation models and show their cards",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("list", help="the shipped models, one line each")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(handler=run_list)
    p = sub.add_parser("info", help="one model's registry entry (sha256 checked) and model card")
    p.add_argument("name", help="a name from `tfmusic models list`")
    p.set_defaults(handler=run_info)
