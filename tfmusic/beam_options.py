"""Beam pipeline options shared by every tfmusic Beam job.

Since Beam 2.68 the DirectRunner tries to download the Prism binary first, which fails offline.
tfmusic therefore pins the in-process FnApiRunner whenever no ``--runner`` is given. Any standard
Beam flag (``--runner``, ``--direct_num_workers``, ``--direct_running_mode``, Dataflow flags)
passes through untouched. With the pinned runner the pipeline options also reach the SDK worker
subprocesses of ``--direct_running_mode=multi_processing`` (a bare ``FnApiRunner()`` hands them
none), and their log level defaults to WARNING unless ``--default_sdk_harness_log_level`` is given.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

DEFAULT_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
DEFAULT_WORKER_LOG_LEVEL = "WARNING"
# Local SDK workers have no staging directory by design; their start-up warning about it says nothing
# a user can act on, so that one logger is raised to ERROR (other worker warnings still show). The
# worker runs that module as a script, so its logger is named "__main__".
QUIET_WORKER_LOGGERS = '{"__main__": "ERROR", "apache_beam.runners.worker.sdk_worker_main": "ERROR"}'


def has_flag(argv: Sequence[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in argv)


def pipeline_options(beam_args: Sequence[str] = ()):
    """Build ``PipelineOptions`` from pass-through Beam flags, defaulting to the FnApiRunner.

    Returns ``(options, runner)``: ``runner`` is ``DEFAULT_RUNNER`` when tfmusic pins the runner
    (then worker logs default to WARNING), else ``None`` and the flags are used as given.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    runner = None
    if not has_flag(args, "--runner"):
        runner = DEFAULT_RUNNER
        if not has_flag(args, "--default_sdk_harness_log_level"):
            args.append(f"--default_sdk_harness_log_level={DEFAULT_WORKER_LOG_LEVEL}")
        if not has_flag(args, "--sdk_harness_log_level_overrides"):
            args.append(f"--sdk_harness_log_level_overrides={QUIET_WORKER_LOGGERS}")
    options = PipelineOptions(args)
    return options, runner


def make_pipeline(beam_args: Sequence[str] = ()):
    """A ``beam.Pipeline`` with tfmusic's offline-safe defaults (FnApiRunner unless --runner)."""
    import apache_beam as beam

    options, runner = pipeline_options(beam_args)
    if runner is None:
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    # FnApiRunner() alone provisions workers with empty options; multi_processing workers read
    # theirs (log level, pickler, ...) from this provision info, as under the portable runner.
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
    provision = ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(
        retrieval_token="unused-retrieval-token", pipeline_options=encoded))
    return beam.Pipeline(runner=FnApiRunner(provision_info=provision), options=options)


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """Value of ``--name=value`` or ``--name value`` among pass-through Beam flags."""
    argv = list(argv)
    for i, a in enumerate(argv):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def run_pipeline(build: Callable[[Any], None], beam_args: Sequence[str] = ()) -> bool:
    """Build a pipeline with ``build(p)`` and run it to completion; returns False when the run only
    wrote a Dataflow template (``--template_location``): the job then runs later, on Dataflow,
    and its outputs do not exist yet."""
    pipeline = make_pipeline(beam_args)
    build(pipeline)
    result = pipeline.run()
    if flag_value(beam_args, "--template_location"):
        return False
    result.wait_until_finish()
    state = getattr(result, "state", None)
    if state is not None and str(state).upper().endswith(("FAILED", "CANCELLED")):
        raise RuntimeError(f"Beam job ended in state {state}")
    return True


def progress_dofn(fn: Callable[[Any], Any], *, total: int, desc: str, unit: str, enabled: bool = True):
    """A DoFn yielding ``fn(element)`` per element and ticking a tqdm bar, one bar per worker.

    The bar opens in ``setup`` and closes in ``teardown``; ``disable=None`` keeps non-TTY runs quiet
    and ``enabled=False`` (``--quiet``) turns it off. ``fn`` must be picklable (multi_processing).
    """
    import apache_beam as beam

    class ProgressDoFn(beam.DoFn):
        def setup(self):
            self._bar = None
            if enabled:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)

        def process(self, element):
            result = fn(element)
            if self._bar is not None:
                self._bar.update(1)
            yield result

        def teardown(self):
            if self._bar is not None:
                self._bar.close()

    return ProgressDoFn()


def remote_runner(beam_args) -> str | None:
    """The runner named in ``beam_args`` when its workers are other machines (Dataflow...), else None."""
    runner = flag_value(list(beam_args), "--runner") or ""
    return runner if runner and not any(k in runner.lower() for k in ("direct", "fnapi")) else None


def check_worker_path(path: str, what: str, beam_args) -> None:
    """A local ``path`` is only on this machine: with a remote runner (``--runner=DataflowRunner``...)
    the workers could not read or write it, so fail before the job starts."""
    from tfmusic import storage

    runner = remote_runner(beam_args)
    if storage.is_local(path) and runner:
        raise ValueError(f"{what} {path}: a local path is not on the {runner} workers; "
                         f"use a gs:// (or other shared filesystem) path")
