"""Trainer speed options: ``steps_per_execution`` gives the same training under the default, mirrored
(2 logical CPUs) and multi-worker (2 processes) strategies; ``jit_compile`` (XLA) the same training
under the default strategy and a clear error with several replicas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests._mirrored import run_mirrored
from tfmusic.training.config import ConfigError, TrainerConfig

RUNS = {"plain": {}, "spe3": {"steps_per_execution": 3}}


def _weights(path: Path) -> list[np.ndarray]:
    data = np.load(path)
    return [data[k] for k in sorted(data.files)]


def _same_training(out: Path, a: str, b: str) -> None:
    wa, wb = _weights(out / f"{a}.npz"), _weights(out / f"{b}.npz")
    assert len(wa) == len(wb) > 2
    for x, y in zip(wa, wb):  # XLA may fuse float ops differently: same training, not same bits
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_config_rejects_zero_steps_per_execution():
    with pytest.raises(ConfigError, match="steps_per_execution"):
        TrainerConfig(steps_per_execution=0).validate()


def test_default_strategy_in_process(tmp_path):
    from tests._perf_trainer_worker import main

    runs = {**RUNS, "jit_spe": {"jit_compile": True, "steps_per_execution": 3}, "spe4": {"steps_per_execution": 4}}
    assert main("default", "-", str(tmp_path), json.dumps(runs)) == 0
    # 5 steps, log every 2, eval at 5: calls of 1 (first), 1 (to the log at 2), 2, 1 -> still step 5
    for name in runs:
        assert int(np.load(tmp_path / f"{name}.npz")["iterations"]) == 5
        assert json.loads((tmp_path / name / "history.json").read_text())["history"][0]["step"] == 5
    for name in ("spe3", "spe4"):  # the same ops, in a graph loop: bit for bit
        for x, y in zip(_weights(tmp_path / "plain.npz"), _weights(tmp_path / f"{name}.npz")):
            np.testing.assert_array_equal(x, y)
    _same_training(tmp_path, "plain", "jit_spe")


def test_mirrored_two_logical_cpus(tmp_path):
    runs = {**RUNS, "jit": {"jit_compile": True}}
    summary = run_mirrored(f"""
from tests._perf_trainer_worker import main
main("mirrored", "2", {str(tmp_path)!r}, {json.dumps(runs)!r})
""")  # in the session's mirrored host (tests/_mirrored.py)
    assert summary["spe3"] == {"replicas": 2, "step": 5, "history": [5]}
    _same_training(tmp_path, "plain", "spe3")
    assert "jit_compile works with one replica" in summary["jit"]["error"]


def test_multiworker_two_processes(multiworker_pair):
    """The spe3 run on the session's 2-process cluster (tests/conftest.py), after its toy run."""
    folder, outputs = multiworker_pair
    for code, stdout, stderr in outputs:
        assert code == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1])["perf"]["spe3"] == {"replicas": 2, "step": 5,
                                                                                "history": [5]}
    w0, w1 = _weights(folder / "perf0" / "spe3.npz"), _weights(folder / "perf1" / "spe3.npz")
    for x, y in zip(w0, w1):
        np.testing.assert_array_equal(x, y)


def test_mixed_precision_auto_resolves_from_the_hardware():
    from tfmusic.training.precision import cpu_has_native_bf16, resolve_policy

    assert cpu_has_native_bf16("flags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags\t\t: fpu sse2 avx2\n")
    assert resolve_policy("mixed_float16") == "mixed_float16"
    assert resolve_policy("auto") == ("mixed_bfloat16" if cpu_has_native_bf16() else "float32")  # no GPU in CI
    TrainerConfig(mixed_precision="auto").validate()
