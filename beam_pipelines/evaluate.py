"""Beam entry point: separation evaluation, one held-out song per element (museval is memory-hungry).

    python beam_pipelines/evaluate.py --model iass=RUN --model umx=RUN --data DIR --out DIR \
        [--split test] [--oracles ibm,irm,mix] [--mode v4|v3] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing | --runner=DataflowRunner ...]

Thin by design: identical to ``tfmusic evaluate --beam``. The pipeline is the named transform
``tfmusic.evaluation.beam_job.EvaluateSeparation`` (importable here, to compose into other
pipelines). DATA, OUT and the models may be local or on object storage (``gs://...``).
Unknown flags are Beam pipeline options. Writes OUT/<method>/<split>/<track>.json, OUT/summary.*
and OUT/manifest.json (last; in = out + failed, with each failure's reason).
"""

from __future__ import annotations

import sys


def __getattr__(name: str):
    if name == "EvaluateSeparation":  # lazy: apache_beam is imported only when asked for
        from tfmusic.evaluation.beam_job import EvaluateSeparation

        return EvaluateSeparation
    raise AttributeError(name)


def run(argv: list[str] | None = None) -> int:
    from tfmusic.cli.main import main as tfmusic_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return tfmusic_main(["evaluate", "--beam", *argv])


main = run  # the name this entry point had before

if __name__ == "__main__":
    sys.exit(run())
