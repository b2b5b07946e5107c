"""Open-Unmix in Keras: parameter count, shapes, saving, and parity with the PyTorch reference."""

import sys
import types

import keras
import numpy as np
import pytest

from tfmusic.models.openunmix import OpenUnmix
from tfmusic.models.umx_convert import load_openunmix_state_dict


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_parameter_count_matches_spec():
    assert trainable_count(OpenUnmix().build_for_frames()) == 8_893_348


def test_shapes_unidirectional_and_save_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    model = OpenUnmix(nb_channels=1, hidden_size=32, nb_layers=2, unidirectional=True, target="bass")
    mix = np.random.default_rng(0).random((2, 1, 7, 2049)).astype(np.float32)
    out = model(mix)
    assert set(out) == {"mask", "estimate"}
    assert out["mask"].shape == out["estimate"].shape == (2, 1, 7, 2049)
    np.testing.assert_allclose(out["estimate"].numpy(), out["mask"].numpy() * mix, rtol=1e-6)
    model.set_input_statistics(np.full(2049, 0.5), np.full(2049, 2.0))
    np.testing.assert_allclose(model.input_mean.numpy(), -0.5)
    np.testing.assert_allclose(model.input_scale.numpy(), 0.5)
    path = tmp_path / "umx.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, OpenUnmix) and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded(mix)["mask"].numpy(), model(mix)["mask"].numpy(), rtol=1e-5, atol=1e-6)


def _torch_openunmix():
    torch = pytest.importorskip("torch")
    try:
        import torchaudio  # noqa: F401
    except ImportError:  # openunmix imports torchaudio at top level but the model never uses it
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    model_mod = pytest.importorskip("openunmix.model")
    return torch, model_mod


@pytest.mark.torch
def test_parity_with_pytorch_openunmix(tmp_path):
    torch, model_mod = _torch_openunmix()
    torch.manual_seed(0)
    ref = model_mod.OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, nb_layers=3, max_bin=1487)
    # Random, non-trivial normalization and BatchNorm statistics so every tensor is exercised.
    with torch.no_grad():
        for name, tensor in ref.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            elif name.endswith("running_mean") or name in ("input_mean", "output_mean"):
                tensor.copy_(torch.randn_like(tensor) * 0.1)
            elif name in ("input_scale", "output_scale"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    ref.eval()
    mix = np.abs(np.random.default_rng(0).standard_normal((2, 2, 12, 2049))).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(mix).permute(0, 1, 3, 2)).permute(0, 1, 3, 2).numpy()

    path = tmp_path / "vocals.pth"
    torch.save(ref.state_dict(), path)
    model = load_openunmix_state_dict(OpenUnmix(), path)
    got = model(mix)["estimate"].numpy()
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(expected).max() > 1e-2  # the comparison is not vacuous


@pytest.mark.torch
def test_state_dict_errors_name_the_problem():
    torch, model_mod = _torch_openunmix()
    ref = model_mod.OpenUnmix(nb_bins=2049, nb_channels=1, hidden_size=32, nb_layers=1, max_bin=1487)
    state = ref.state_dict()
    with pytest.raises(ValueError, match="lstm.weight_ih_l0"):
        load_openunmix_state_dict(OpenUnmix(nb_channels=1, hidden_size=32, nb_layers=1), {**state, "fc1.weight": state["fc1.weight"], "lstm.weight_ih_l0": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="missing parameter 'fc2.weight'"):
        load_openunmix_state_dict(OpenUnmix(nb_channels=1, hidden_size=32, nb_layers=1),
                                  {k: v for k, v in state.items() if k != "fc2.weight"})
    with pytest.raises(ValueError, match="fc1.weight has shape"):
        load_openunmix_state_dict(OpenUnmix(nb_channels=2, hidden_size=32, nb_layers=1), state)
