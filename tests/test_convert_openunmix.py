"""`tfmusic convert openunmix`: an Open-Unmix model folder separates like openunmix's own Separator."""
import json
import sys
import types

import numpy as np
import pytest

from tfmusic.cli.main import main as tfmusic_main


def _openunmix():
    torch = pytest.importorskip("torch")
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except ImportError:  # openunmix imports torchaudio at top level; the model code never uses it
            sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    return torch, pytest.importorskip("openunmix.model")


def _write_folder(folder, torch, model_mod, targets=("vocals", "drums")):
    """The layout openunmix's training writes: separator.json, <target>.json, <target>.pth."""
    folder.mkdir()
    (folder / "separator.json").write_text(json.dumps(
        {"targets": list(targets), "rate": 44100.0, "sample_rate": 44100.0, "nfft": 4096, "nhop": 1024,
         "nb_channels": 2}))
    models = {}
    for i, target in enumerate(targets):
        torch.manual_seed(i)
        ref = model_mod.OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=32, nb_layers=3, max_bin=1487)
        with torch.no_grad():
            for name, tensor in ref.state_dict().items():
                if name.endswith("running_var") or name in ("input_scale", "output_scale"):
                    tensor.copy_(torch.rand_like(tensor) + 0.5)
                elif name.endswith("running_mean") or name in ("input_mean", "output_mean"):
                    tensor.copy_(torch.randn_like(tensor) * 0.1)
        ref.eval()
        torch.save(ref.state_dict(), folder / f"{target}.pth")
        (folder / f"{target}.json").write_text(json.dumps(
            {"args": {"nfft": 4096, "nhop": 1024, "nb_channels": 2, "hidden_size": 32, "target": target}}))
        models[target] = ref
    return models


@pytest.mark.torch
def test_convert_round_trip_matches_openunmix_separator(tmp_path):
    torch, model_mod = _openunmix()
    folder = tmp_path / "umx"
    refs = _write_folder(folder, torch, model_mod)
    out = tmp_path / "umx.keras"
    assert tfmusic_main(["convert", "openunmix", str(folder), "--out", str(out), "--quiet"]) == 0

    mix = (np.random.default_rng(0).standard_normal((1, 2, 44100)) * 0.1).astype(np.float32)
    ref_sep = model_mod.Separator(refs, niter=0, residual=False, sample_rate=44100.0, n_fft=4096, n_hop=1024,
                                  nb_channels=2, wiener_win_len=None)
    ref_sep.eval()
    with torch.no_grad():
        expected = ref_sep(torch.from_numpy(mix)).numpy()  # (batch, targets, channels, samples)

    from tfmusic.models.separator import load_separator

    separator = load_separator([str(out)])
    assert separator.target_names == sorted(refs)
    got = separator(mix)
    for j, target in enumerate(ref_sep.target_models):  # openunmix keeps the dict's order
        diff = np.abs(np.asarray(got[target]) - expected[:, j]).max()
        assert diff <= 1e-4, (target, diff)
        assert np.abs(expected[:, j]).max() > 1e-3  # not a vacuous comparison


@pytest.mark.torch
def test_convert_errors_name_the_file(tmp_path, capsys):
    torch, model_mod = _openunmix()
    folder = tmp_path / "umx"
    _write_folder(folder, torch, model_mod, targets=("bass",))
    (folder / "bass.pth").unlink()
    assert tfmusic_main(["convert", "openunmix", str(folder), "--out", str(tmp_path / "x.keras")]) == 2
    assert "bass.pth" in capsys.readouterr().err
    (folder / "separator.json").write_text(json.dumps({"sample_rate": 16000, "nfft": 4096, "nhop": 1024}))
    assert tfmusic_main(["convert", "openunmix", str(folder), "--out", str(tmp_path / "x.keras")]) == 2
    assert "sample_rate 16000" in capsys.readouterr().err
