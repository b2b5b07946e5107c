"""Run every benchmark and write one table of side-by-side ratios.

Each ``bench/bench_*.py`` module exposes ``run(out_dir: Path) -> list[dict]``; a row has
``what``, ``ours``, ``reference``, ``unit``, ``ratio`` (how many times better ours is, >1 = better),
``target`` (text, e.g. ">= 100x"), ``met`` (bool or None) and ``notes``. Both sides of a ratio are
measured in the same run on the same machine. Results: ``<out>/bench.md`` and ``<out>/bench.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("what", "ours", "reference", "unit", "ratio", "target", "met", "notes")


def machine_summary() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def discover(only: list[str] | None) -> list[Path]:
    """The benchmarks to run: all, sorted; with ``only``, those matching, in the order ``only`` names
    them (so a time-boxed run puts what matters most first)."""
    paths = sorted(HERE.glob("bench_*.py"))
    if only:
        paths = list(dict.fromkeys(p for o in only for p in paths if o in p.stem))
    return paths


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return ""
    return str(value)


def to_markdown(rows: list[dict], machine: str) -> str:
    lines = [f"# tfmusic benchmarks\n\nMachine: {machine}. Date: {time.strftime('%Y-%m-%d %H:%M')}.\n",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, rows: list[dict]) -> str:
    """``bench.json`` and ``bench.md`` with the rows so far (rewritten after every benchmark, so a
    run stopped early, e.g. at the end of a quiet window, keeps what it measured)."""
    machine = machine_summary()
    (out / "bench.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    table = to_markdown(rows, machine)
    (out / "bench.md").write_text(table)
    return table


def run_isolated(path: Path, out: Path) -> list[dict]:
    """``path``'s rows from a fresh Python process: its memory is returned when it ends (the ONNX
    exports of two benches peak at ~9 GB each, on top of what earlier benches left in one process)
    and its TF thread settings are its own."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        proc = subprocess.run([sys.executable, __file__, "--out", str(out), "--bench-file", str(path),
                               "--rows-out", str(rows_file)])
        if proc.returncode != 0 or not rows_file.is_file():
            raise RuntimeError(f"{path.stem} exited with {proc.returncode}")
        return json.loads(rows_file.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="*", help="run only benchmarks whose name contains one of these, in this order")
    parser.add_argument("--isolate", action="store_true", help="run each benchmark in its own Python process")
    parser.add_argument("--bench-file", type=Path, help=argparse.SUPPRESS)  # --isolate's child: this file only
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)  # ... writing its rows here
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.bench_file:
        args.rows_out.write_text(json.dumps(load(args.bench_file).run(args.out), default=str))
        return 0
    rows: list[dict] = []
    failed = 0
    for path in discover(args.only):
        print(f"== {path.stem}", flush=True)
        start = time.perf_counter()
        try:
            new_rows = run_isolated(path, args.out) if args.isolate else load(path).run(args.out)
        except Exception:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failed += 1
            new_rows = [{"what": path.stem, "notes": "FAILED (see log)"}]
        for row in new_rows:
            print("   " + ", ".join(f"{c}={fmt(row.get(c))}" for c in COLUMNS if row.get(c) is not None))
        rows.extend(new_rows)
        print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
        table = write(args.out, rows)
    print(table if rows else "no benchmark matched")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
