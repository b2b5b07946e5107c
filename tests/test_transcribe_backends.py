"""`tfmusic separate --transcribe` gives the same piano roll through the in-process, ONNX and gRPC backends
(issue 26): a small random-weight IASS+pitch model, exported with `tfmusic export saved-model` and
`tfmusic export onnx` (the `transcribe` signature: stems and curves from one graph), served by the
embedded server. Rolls may differ by one frame at note edges (the exported graph's DFT STFT vs the
in-process FFT round differently); its stored decision threshold (0.3) travels with the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

SR, HOP = 44100, 1024


def song(path, seconds: float = 3.0) -> None:
    """Stereo harmonic tones changing every 0.5 s, so the roll has notes that start and stop."""
    import soundfile as sf

    t = np.arange(int(seconds * SR)) / SR
    audio = np.zeros_like(t)
    for i, pitch in enumerate((40, 47, 35, 52, 43, 38)):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        part = (t >= 0.5 * i) & (t < 0.5 * i + 0.45)
        audio += part * 0.2 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    sf.write(path, np.stack([audio, 0.8 * audio], axis=1).astype(np.float32), SR)


def off_edges(reference: np.ndarray, other: np.ndarray) -> int:
    """Cells where ``other`` differs from ``reference`` and no note edge of ``reference`` is within a frame."""
    padded = np.pad(reference, ((0, 0), (1, 1)), mode="edge")
    near_edge = (padded[:, :-2] != reference) | (padded[:, 2:] != reference)
    return int(np.sum((reference != other) & ~near_edge))


@pytest.mark.slow
def test_transcribe_same_roll_in_process_onnx_and_grpc(tmp_path):
    import soundfile as sf

    from tfmusic.cli.main import main
    from tfmusic.models.iass_pitch import IASSPitch
    from tfmusic.models.separator import Separator
    from tfmusic.serving.server import EmbeddedServer

    keras.utils.set_random_seed(0)
    model = IASSPitch(max_bin=729, target="bass", pitch_filters=4).build_for_frames()
    model.activity.out.bias.assign(np.full(1, 20.0, np.float32))  # gate open: the roll is the pitch head's
    model.pitch.out.kernel.assign(model.pitch.out.kernel * 40.0)  # decisive logits: flips only where they cross
    model.pitch_threshold = 0.3
    wav = tmp_path / "song.wav"
    song(wav)
    # centre the random head on this song (about half the cells on), so the roll has edges to compare
    audio = sf.read(wav, dtype="float32")[0].T[None]
    logits = np.log(np.clip(Separator({"bass": model}, stft_method="fft")(audio)["bass_pitch"].numpy(), 1e-7, 1 - 1e-7))
    logits -= np.log(1 - np.exp(logits))
    model.pitch.out.bias.assign(model.pitch.out.bias - np.median(logits))
    model.save(tmp_path / "bass.keras")
    repo, onnx = tmp_path / "repo", tmp_path / "sep.onnx"
    assert main(["export", "saved-model", "--model", str(tmp_path / "bass.keras"), "--repo", str(repo),
                 "--name", "separator"]) == 0
    assert main(["export", "onnx", "--saved-model", str(repo / "separator"), "--out", str(onnx)]) == 0
    common = [str(wav), "--transcribe", "--quiet"]
    assert main(["separate", *common, "--model", str(tmp_path / "bass.keras"), "--out", str(tmp_path / "keras")]) == 0
    assert main(["separate", *common, "--backend", "onnx", "--model", str(onnx), "--out", str(tmp_path / "onnx")]) == 0
    with EmbeddedServer(repo, port=0, poll_seconds=0) as server:
        assert main(["separate", *common, "--server", server.address, "--out", str(tmp_path / "grpc")]) == 0
    rolls = {name: np.load(tmp_path / name / "song" / "bass.pianoroll.npy") for name in ("keras", "onnx", "grpc")}
    reference = rolls["keras"]
    assert reference.shape == (88, 1 + 3 * SR // HOP)
    assert 0.2 < reference.mean() < 0.8, "the roll must have notes that start and stop to compare"
    for name in ("onnx", "grpc"):
        assert rolls[name].shape == reference.shape
        assert off_edges(reference, rolls[name]) == 0, name
        assert np.mean(rolls[name] != reference) < 0.01, name
    for name in rolls:  # the MIDI file is written beside every roll
        assert (tmp_path / name / "song" / "bass.mid").is_file()
