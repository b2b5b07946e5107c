"""A 20-second version of the server soak (bench/reliability/soak.py; ``make reliability`` runs 5 minutes):
8 clients, hostile requests, a version published and the old one retired mid-run; only the
expected codes, valid outputs right, both versions answered, RSS within 10%."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("tensorflow_serving")
SOAK = Path(__file__).resolve().parent.parent / "bench" / "reliability" / "soak.py"


def test_twenty_second_soak_with_a_version_change(tmp_path):
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    report = soak.soak(20.0, tmp_path / "soak")
    assert soak.failures(report) == [], report
    assert report["requests"] > 50 and report["unexpected"] == {}
    assert report["codes"].get("OK", 0) > 0 and set(report["codes"]) <= {
        "OK", "INVALID_ARGUMENT", "INTERNAL", "RESOURCE_EXHAUSTED"}


def test_an_answer_naming_the_wrong_version_is_a_wrong_output():
    """The soak's output check can fail: version 2 answers differently, and a response that names one
    version but carries the other's outputs, or no version's, is reported."""
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    import numpy as np

    expected = {1: {"vocals": np.zeros(4, np.float32)}, 2: {"vocals": np.ones(4, np.float32)}}
    assert soak.output_problem("predict", 1, expected[1], expected) is None
    assert soak.output_problem("rest_predict", None, expected[2], expected) is None  # REST names no version
    assert "names version 2" in soak.output_problem("predict", 2, expected[1], expected)
    assert "match no published version" in soak.output_problem("predict", 1, {"vocals": np.full(4, 0.5)}, expected)


def test_fault_table_reports_what_the_tests_observed(tmp_path, monkeypatch):
    """A fault the test did not see survived, and a loss it measured, or could not measure, show in the table."""
    import json

    from tests._reliability_worker import fault_log

    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    log = tmp_path / "faults.jsonl"
    monkeypatch.setenv("TFMUSIC_RELIABILITY_LOG", str(log))
    with fault_log("resumed", ["kill:1", "kill:2"]) as record:
        record.survived("kill:1")
        record.lost = 3
    with pytest.raises(AssertionError):
        with fault_log("failed early", ["kill:3"]):
            assert False, "the test failed before it measured anything"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["fault"], r["survived"], r["data_lost"]) for r in lines] == [
        ("kill:1", True, 3), ("kill:2", False, 3), ("kill:3", False, None)]
    table = soak.fault_table(log)
    assert "| resumed | 2: kill:1, kill:2 | 1 of 2 | 3 |" in table
    assert "| failed early | 1: kill:3 | 0 of 1 | not measured (the test failed first) |" in table
