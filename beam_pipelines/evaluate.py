"""Beam entry point: separation evaluation, one held-out song per element (museval is memory-hungry).

    python beam_pipelines/evaluate.py --model iass=RUN --model umx=RUN --data DIR --out DIR \
        [--split test] [--oracles ibm,irm,mix] [--mode v4|v3] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=...]

Thin by design: identical to ``tfmusic evaluate --beam``; the pipeline lives in
``tfmusic.evaluation.separation.evaluate_dataset``. Unknown flags are Beam pipeline options.
Writes OUT/<method>/<split>/<track>.json, OUT/manifest.json (in/out/failed counts), OUT/summary.*.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return tfmusic_main(["evaluate", "--beam", *argv])


if __name__ == "__main__":
    sys.exit(main())
