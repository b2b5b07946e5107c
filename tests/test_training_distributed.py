"""The trainer under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 processes).

Logical devices and the multi-worker runtime must be configured before TensorFlow initialises,
which the test process itself has usually done already: the mirrored run goes to the session's
mirrored host (tests/_mirrored.py), the multi-worker run is the session's 2-process cluster
(``multiworker_pair`` in tests/conftest.py, shared with tests/test_perf_trainer_options.py).
"""
import json

import numpy as np

from tests._mirrored import run_mirrored


def test_mirrored_two_logical_cpus(tmp_path):
    out = tmp_path / "w.npz"
    info = run_mirrored(f"""
from tests._multiworker_worker import main
main(["--strategy", "mirrored", "--devices", "2", "--run-dir", {str(tmp_path / "run")!r},
      "--weights-out", {str(out)!r}, "--steps", "2"])
""")
    assert info == {"replicas": 2, "step": 2, "history": 1}
    weights = np.load(out)
    assert int(weights["iterations"]) == 2
    np.testing.assert_allclose(weights["input_mean"], weights["expected_mean"], rtol=1e-5)
    assert all(np.isfinite(weights[k]).all() for k in weights.files)
    assert (tmp_path / "run" / "model.keras").exists()


def test_multiworker_two_processes_end_identical(multiworker_pair):
    folder, outputs = multiworker_pair
    for code, stdout, stderr in outputs:
        assert code == 0, stderr[-3000:]
        summary = json.loads(stdout.strip().splitlines()[-1])
        summary.pop("perf")  # tests/test_perf_trainer_options.py checks that part
        assert summary == {"replicas": 2, "step": 3, "history": 1}
    w0, w1 = np.load(folder / "w0.npz"), np.load(folder / "w1.npz")
    assert w0.files == w1.files and int(w0["iterations"]) == 3
    np.testing.assert_allclose(w0["input_mean"], w0["expected_mean"], rtol=1e-5)
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    run = folder / "run"
    # only the chief writes the run directory; the other worker's checkpoints went to scratch
    assert (run / "model.keras").exists() and (run / "history.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    assert not list(run.glob("**/*worker*"))
