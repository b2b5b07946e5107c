"""tfmusic.beam_options: worker options reach the FnApiRunner's workers; the progress DoFn maps 1:1."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("apache_beam")


def _worker_options(pipeline) -> dict:
    from google.protobuf import json_format

    struct = pipeline.runner._provision_info.provision_info.pipeline_options
    return {k.split(":")[2]: v for k, v in json.loads(json_format.MessageToJson(struct)).items()}


def test_worker_log_level_defaults_to_warning_and_user_flag_wins():
    from tfmusic.beam_options import make_pipeline

    opts = _worker_options(make_pipeline(["--direct_running_mode=multi_processing"]))
    assert opts["default_sdk_harness_log_level"] == "WARNING"
    assert opts["direct_running_mode"] == "multi_processing"
    opts = _worker_options(make_pipeline(["--default_sdk_harness_log_level=DEBUG"]))
    assert opts["default_sdk_harness_log_level"] == "DEBUG"


def test_explicit_runner_keeps_flags_as_given():
    from tfmusic.beam_options import DEFAULT_RUNNER, pipeline_options

    options, runner = pipeline_options(["--runner=DirectRunner"])
    assert runner is None
    assert options.get_all_options()["default_sdk_harness_log_level"] is None
    options, runner = pipeline_options([])
    assert runner == DEFAULT_RUNNER


def test_progress_dofn_yields_one_result_per_element(tmp_path):
    import apache_beam as beam

    from tfmusic.beam_options import make_pipeline, progress_dofn

    out = tmp_path / "out.json"
    with make_pipeline([]) as p:
        _ = (p | beam.Create([1, 2, 3])
             | beam.ParDo(progress_dofn(lambda x: x * 10, total=3, desc="test", unit="item"))
             | beam.combiners.ToList()
             | beam.Map(lambda xs: out.write_text(json.dumps(sorted(xs)))))
    assert json.loads(out.read_text()) == [10, 20, 30]
