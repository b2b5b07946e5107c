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
