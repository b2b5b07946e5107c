"""Beam pipeline options shared by every tfmusic Beam job.

Since Beam 2.68 the DirectRunner tries to download the Prism binary first, which fails offline.
tfmusic therefore pins the in-process FnApiRunner whenever no ``--runner`` is given. Any standard
Beam flag (``--runner``, ``--direct_num_workers``, ``--direct_running_mode``, Dataflow flags)
passes through untouched.
"""

from __future__ import annotations

from typing import Sequence

DEFAULT_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def has_flag(argv: Sequence[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in argv)


def pipeline_options(beam_args: Sequence[str] = ()):
    """Build ``PipelineOptions`` from pass-through Beam flags, defaulting to the FnApiRunner."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    runner = None
    if not has_flag(args, "--runner"):
        runner = DEFAULT_RUNNER
    options = PipelineOptions(args)
    return options, runner


def make_pipeline(beam_args: Sequence[str] = ()):
    """A ``beam.Pipeline`` with tfmusic's offline-safe defaults (FnApiRunner unless --runner)."""
    import apache_beam as beam

    options, runner = pipeline_options(beam_args)
    if runner is None:
        return beam.Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return beam.Pipeline(runner=FnApiRunner(), options=options)
