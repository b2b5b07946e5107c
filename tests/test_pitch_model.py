"""IASS+pitch: the pitch loss (masked where labels are absent; class weights and focal term), the
log-frequency view, the stored decision threshold, saving and loading (also of issue-17 files), the
Separator's ``<target>_pitch``, and the pitch output in the SavedModel and ONNX signatures."""

from __future__ import annotations

import keras
import numpy as np

from tests.test_export_saved_model import HOP, N_FFT, TinySeparator
from tfmusic.export import saved_model as sm

B, T = 2, 6


def _outputs(rng, pitch_logits):
    return {"estimate": rng.random((B, 1, T, 5)).astype(np.float32),
            "activity_logits": rng.standard_normal((B, T)).astype(np.float32),
            "pitch_logits": pitch_logits.astype(np.float32)}


def test_pitch_loss_is_masked_where_labels_are_absent():
    from tfmusic.training.separation_pitch import pitch_losses

    rng = np.random.default_rng(0)
    target = rng.random((B, 1, T, 5)).astype(np.float32)
    activity = (rng.random((B, T)) > 0.5).astype(np.float32)
    roll = (rng.random((B, T, 88)) > 0.9).astype(np.float32)
    logits = rng.standard_normal((B, T, 88))
    known = np.array([1.0, 0.0], np.float32)
    a = pitch_losses(_outputs(np.random.default_rng(1), logits), target, activity, roll, known, 2.0, 3.0)
    # change the unlabelled example's pitch logits and labels: its loss must not move
    logits2, roll2 = logits.copy(), roll.copy()
    logits2[1] += 5.0
    roll2[1] = 1.0 - roll2[1]
    b = pitch_losses(_outputs(np.random.default_rng(1), logits2), target, activity, roll2, known, 2.0, 3.0)
    np.testing.assert_allclose(a["loss"].numpy(), b["loss"].numpy(), rtol=1e-6)
    assert float(a["pitch_bce"][1]) == 0.0 and float(a["pitch_bce"][0]) > 0.0
    # the labelled example: mse + 2 bce + 3 pitch bce
    np.testing.assert_allclose(a["loss"].numpy()[0],
                               (a["mse"] + 2.0 * a["bce"] + 3.0 * a["pitch_bce"]).numpy()[0], rtol=1e-6)
    np.testing.assert_allclose(a["loss"].numpy()[1], (a["mse"] + 2.0 * a["bce"]).numpy()[1], rtol=1e-6)


def test_multipitch_loss_weights_on_cells_and_focuses_on_hard_ones():
    import tensorflow as tf

    from tfmusic.training.separation_pitch import multipitch_loss

    labels = np.array([[1.0, 0.0, 1.0, 0.0]], np.float32)
    logits = np.array([[-2.0, -2.0, 3.0, 3.0]], np.float32)
    plain = multipitch_loss(labels, logits).numpy()
    want = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits).numpy()
    np.testing.assert_allclose(plain, want, rtol=1e-6)  # pos_weight 1, gamma 0: the plain BCE
    weighted = multipitch_loss(labels, logits, pos_weight=8.0).numpy()
    np.testing.assert_allclose(weighted, want * np.where(labels > 0, 8.0, 1.0), rtol=1e-6)
    focal = multipitch_loss(labels, logits, focal_gamma=2.0).numpy()
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(focal, want * np.where(labels > 0, (1 - p) ** 2, p ** 2), rtol=1e-5)
    # easy cells (index 1: off and predicted off) lose more weight than hard ones (index 0: missed note)
    assert focal[0, 1] / want[0, 1] < focal[0, 0] / want[0, 0]


def test_choose_threshold_picks_the_best_frame_f1():
    from tfmusic.training.separation_pitch import choose_threshold, frame_f1

    labels = np.array([[1, 0, 0, 1, 0]], bool)
    probs = np.array([[0.3, 0.1, 0.2, 0.35, 0.05]], np.float32)  # every note under 0.5
    threshold, f1 = choose_threshold(probs, labels)
    assert 0.2 < threshold <= 0.3 and f1 == 1.0
    assert frame_f1(probs >= 0.5, labels) == 0.0


def test_log_frequency_view_finds_a_bass_note_by_its_row():
    from tfmusic.models.iass_pitch import log_frequency_filterbank

    bank = log_frequency_filterbank(44100, 4096, 1487, 3, 21, 88 * 3)
    live = bank.sum(axis=0) > 0
    np.testing.assert_allclose(bank.sum(axis=0)[live], 1.0, rtol=1e-5)  # rows average their bins
    assert live[:3].all()  # A0's rows are narrower than a bin and interpolate instead of going empty
    # a sinusoid's strongest row is its key's centre row: exactly where rows are wider than a bin (A6,
    # 1760 Hz), within a third of a semitone at 220 Hz (A3; below, the STFT bins limit it: harmonics help)
    t = np.arange(4096) / 44100
    for key, hz, slack in ((72, 1760.0, 0), (36, 220.0, 1)):
        mag = np.abs(np.fft.rfft(np.hanning(4096) * np.sin(2 * np.pi * hz * t)))[:1487]
        assert abs(int(np.argmax(mag @ bank)) - key * 3) <= slack


def test_inference_logits_are_centred_on_the_stored_threshold(tmp_path):
    from tfmusic.models.files import load_keras_file
    from tfmusic.models.iass_pitch import IASSPitch

    keras.utils.set_random_seed(0)
    model = IASSPitch(max_bin=729, target="bass", pitch_filters=4).build_for_frames(12)
    x = np.random.default_rng(0).random((1, 1, 12, 2049)).astype(np.float32)
    raw = model(x)["pitch_logits"].numpy()
    model.pitch_threshold = 0.2
    model.save(tmp_path / "m.keras")
    loaded = load_keras_file(tmp_path / "m.keras")
    assert loaded.pitch_threshold == 0.2 and loaded.pitch_head == "spectral"
    np.testing.assert_allclose(loaded(x)["pitch_logits"], raw - np.log(0.2 / 0.8), atol=1e-5)


def test_issue_17_configs_load_with_the_latent_head():
    from tfmusic.models.iass_pitch import IASSPitch, PitchHead

    config = IASSPitch(max_bin=729, pitch_head="latent", pitch_filters=4).get_config()
    for key in ("pitch_head", "pitch_bins_per_semitone", "pitch_harmonics", "pitch_detach", "pitch_threshold"):
        config.pop(key)  # what a file written before issue 26 holds
    model = IASSPitch.from_config(config)
    assert isinstance(model.pitch, PitchHead) and model.pitch_threshold == 0.5


def test_no_labels_no_gradient_into_the_pitch_head():
    import tensorflow as tf

    from tfmusic.models.iass_pitch import IASSPitch
    from tfmusic.training.separation_pitch import pitch_losses

    keras.utils.set_random_seed(0)
    model = IASSPitch(max_bin=729, target="bass").build_for_frames(4)
    mag = np.random.default_rng(0).random((B, 1, 4, 2049)).astype(np.float32)
    with tf.GradientTape() as tape:
        out = model(mag, training=True)
        loss = tf.reduce_sum(pitch_losses(out, mag, np.zeros((B, 4), np.float32), np.ones((B, 4, 88), np.float32),
                                          np.zeros(B, np.float32), 2.0, 1.0)["loss"])
    head = model.pitch.trainable_variables
    grads = tape.gradient(loss, head)
    assert all(g is None or not np.any(g.numpy()) for g in grads)


def test_iass_pitch_saves_loads_and_separator_adds_pitch(tmp_path):
    from tfmusic.models.files import load_keras_file
    from tfmusic.models.iass_pitch import IASSPitch
    from tfmusic.models.separator import Separator

    keras.utils.set_random_seed(0)
    model = IASSPitch(max_bin=729, target="bass", pitch_filters=8).build_for_frames(4)
    out = model(np.zeros((1, 1, 12, 2049), np.float32))  # inference: >= 11 frames for the median filter
    assert tuple(out["pitch_logits"].shape) == (1, 12, 88)
    model.save(tmp_path / "m.keras")
    loaded = load_keras_file(tmp_path / "m.keras")
    assert type(loaded).__name__ == "IASSPitch" and loaded.pitch_filters == 8
    x = np.random.default_rng(0).random((1, 1, 12, 2049)).astype(np.float32)
    np.testing.assert_allclose(loaded(x)["pitch_logits"], model(x)["pitch_logits"], atol=1e-6)
    sep = Separator({"bass": model}, stft_method="fft")
    res = sep(np.zeros((1, 2, 12 * HOP), np.float32))  # center=True: 13 frames
    assert tuple(res["bass_pitch"].shape) == (1, 88, 13) and tuple(res["bass_activity"].shape) == (1, 13)


class PitchSeparator(TinySeparator):
    """The stand-in separator plus ``vocals_pitch`` ``(B, 88, T)``, as the Separator gives it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.keys = keras.layers.Dense(88, name="keys")

    def call(self, waveform, training=False):
        out = super().call(waveform, training)
        x = keras.ops.abs(keras.ops.transpose(waveform, (0, 2, 1)))
        frames = self.pool(keras.ops.pad(x, ((0, 0), (N_FFT // 2, N_FFT // 2), (0, 0))))  # (B, T, C)
        out["vocals_pitch"] = keras.ops.transpose(keras.ops.sigmoid(self.keys(frames)), (0, 2, 1))
        return out


def test_pitch_in_saved_model_and_onnx_signatures(tmp_path):
    from tfmusic.export import onnx as tfonnx

    keras.utils.set_random_seed(0)
    model = PitchSeparator()
    model(np.zeros((1, 2, N_FFT + HOP), np.float32))
    version_dir, report = sm.export_separator(model, tmp_path / "repo", "sep", example_samples=N_FFT + 2 * HOP)
    sigs = sm.signature_summary(version_dir)
    assert sorted(sigs["serving_default"]["outputs"]) == ["drums", "vocals"]  # pitch is not a stem
    assert sorted(sigs["activity"]["outputs"]) == ["vocals"]
    assert list(sigs["pitch"]["outputs"]) == ["vocals"]
    assert sigs["pitch"]["outputs"]["vocals"][1] == (-1, 88, -1)
    meta = sm.read_metadata(version_dir)
    assert meta["pitch_targets"] == ["vocals"] and meta["activity_targets"] == ["vocals"]
    (result,) = tfonnx.export_onnx(version_dir, tmp_path / "pitch.onnx", ["pitch"])
    assert result.outputs == ["vocals"] and result.max_rel_diff <= 1e-4
    assert tfonnx.read_onnx_metadata(result.path)["signature"] == "pitch"


def test_separate_transcribe_writes_pianoroll_and_midi(tmp_path):
    import pretty_midi
    import soundfile as sf

    from tfmusic.cli.main import main
    from tfmusic.models.iass_pitch import IASSPitch

    keras.utils.set_random_seed(0)
    model = IASSPitch(max_bin=729, target="bass", pitch_filters=4).build_for_frames()
    # bias every key on and the activity gate open, so the transcription has notes to write
    model.pitch.out.bias.assign(np.full(1, 5.0, np.float32))  # one logit bias shared by every key
    model.activity.out.bias.assign(np.full(1, 20.0, np.float32))
    model.save(tmp_path / "bass.keras")
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(0).standard_normal((44100 * 2, 2)).astype(np.float32), 44100)
    out = tmp_path / "out"
    assert main(["separate", str(song), "--model", str(tmp_path / "bass.keras"), "--out", str(out),
                 "--transcribe", "--quiet"]) == 0
    roll = np.load(out / "song" / "bass.pianoroll.npy")
    assert roll.shape == (88, 1 + 2 * 44100 // HOP) and roll.dtype == bool and roll.any()
    notes = pretty_midi.PrettyMIDI(str(out / "song" / "bass.mid")).instruments[0].notes
    assert {n.pitch for n in notes} <= set(range(21, 109)) and notes
