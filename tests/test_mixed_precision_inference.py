"""Models saved under mixed precision are usable: loading rebuilds them in float32 with the same weights."""
import keras
import numpy as np
import pytest

from tfmusic.models.iass import IASS
from tfmusic.models.openunmix import OpenUnmix
from tfmusic.models.separator import Separator, load_separator


def _saved_under(policy, tmp_path):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        iass = IASS(target="vocals").build_for_frames()
        umx = OpenUnmix(hidden_size=16, nb_layers=1, target="bass").build_for_frames()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert iass.dtype_policy.name == policy
    paths = []
    for model in (iass, umx):
        path = tmp_path / f"{model.target}.keras"
        model.save(path)
        paths.append(str(path))
    return (iass, umx), paths


@pytest.fixture(scope="module")
def saved_under(tmp_path_factory):
    """``_saved_under`` once per policy for this module: the export test reuses the bf16 models."""
    cache = {}

    def get(policy):
        if policy not in cache:
            cache[policy] = _saved_under(policy, tmp_path_factory.mktemp(policy))
        return cache[policy]

    return get


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_models_separate_like_float32(policy, saved_under):
    (iass, umx), paths = saved_under(policy)
    separator = load_separator(paths)
    mix = (0.1 * np.random.default_rng(0).standard_normal((1, 2, 22050))).astype(np.float32)
    got = separator(mix)
    # Reference: float32 models carrying the same (float32 master) weights.
    ref_iass, ref_umx = IASS(target="vocals").build_for_frames(), OpenUnmix(hidden_size=16, nb_layers=1,
                                                                          target="bass").build_for_frames()
    ref_iass.set_weights(iass.get_weights())
    ref_umx.set_weights(umx.get_weights())
    expected = Separator({"vocals": ref_iass, "bass": ref_umx})(mix)
    for key in expected:
        assert got[key].dtype == "float32" and np.isfinite(np.asarray(expected[key])).all()
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5, equal_nan=False)


def test_mixed_precision_separator_exports_to_saved_model(tmp_path, saved_under):
    from tfmusic.export.saved_model import export_separator

    _, paths = saved_under("mixed_bfloat16")
    separator = load_separator(paths)
    version_dir = export_separator(separator, tmp_path / "repo", "separator")
    assert (tmp_path / "repo" / "separator" / "1" / "saved_model.pb").is_file(), version_dir
