"""Export the trained runs listed in a YAML file into a TF Serving repository (and ONNX).

Thin wrapper over `tfmusic export saved-model` / `tfmusic export onnx`; everything else lives in
tfmusic.export. Usage: python export/export_runs.py export/models.yaml [--version N] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from tfmusic.cli.main import main as tfmusic


def commands(spec: dict, version: int | None, overwrite: bool) -> list[list[str]]:
    """The tfmusic argument lists the YAML asks for, in order."""
    repo = spec["repo"]
    out = []
    for entry in spec.get("models", []):
        name = entry["name"]
        cmd = ["export", "saved-model", "--repo", repo, "--name", name]
        for run in entry["runs"]:
            cmd += ["--model", run]
        if entry.get("samples"):
            cmd += ["--samples", str(entry["samples"])]
        if version is not None:
            cmd += ["--version", str(version)]
        if overwrite:
            cmd.append("--overwrite")
        out.append(cmd)
        if entry.get("onnx") and spec.get("onnx_dir"):
            out.append(["export", "onnx", "--saved-model", f"{repo}/{name}",
                        "--out", f"{spec['onnx_dir']}/{name}.onnx"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="YAML listing repo, onnx_dir and models (see export/models.yaml)")
    parser.add_argument("--version", type=int, default=None, help="version for every model (default: next free)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing version folders")
    args = parser.parse_args(argv)
    try:
        spec = yaml.safe_load(args.config.read_text())
    except (OSError, yaml.YAMLError) as err:
        print(f"{args.config}: cannot read export list: {err}", file=sys.stderr)
        return 2
    if not isinstance(spec, dict) or "repo" not in spec or not spec.get("models"):
        print(f"{args.config}: needs 'repo' and a non-empty 'models' list", file=sys.stderr)
        return 2
    for cmd in commands(spec, args.version, args.overwrite):
        print("$ tfmusic " + " ".join(cmd), flush=True)
        status = tfmusic(cmd)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
