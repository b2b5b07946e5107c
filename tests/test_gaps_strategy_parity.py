"""Mirrored training (2 logical CPUs) ends with the weights of a single-device run on the same
global batch: the replicas do not just agree with each other, they compute the right update."""
import numpy as np

from tests._mirrored import run_mirrored_output


def test_mirrored_weights_equal_single_device_weights(tmp_path):
    # both runs in the session's mirrored host (one TensorFlow start); "single" is the default strategy there
    run_mirrored_output(f"""
from tests._strategy_parity_worker import run
run("default", None, {str(tmp_path / "single")!r}, {str(tmp_path / "single.npz")!r})
run("mirrored", "2", {str(tmp_path / "mirrored")!r}, {str(tmp_path / "mirrored.npz")!r})
""")
    single, mirrored = np.load(tmp_path / "single.npz"), np.load(tmp_path / "mirrored.npz")
    assert int(single["replicas"]) == 1 and int(mirrored["replicas"]) == 2
    np.testing.assert_allclose(mirrored["mean"], single["mean"], rtol=1e-6)
    weights = [k for k in single.files if k.startswith("arr_")]
    assert len(weights) == 4
    moved = 0
    for key in weights:
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
        moved += not np.allclose(single[key], 0.0)
    assert moved >= 2  # trained weights, not all-zero biases only
