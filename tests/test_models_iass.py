"""IASS U-Net: exact parameter count, shapes, training vs inference outputs, median filter, saving."""

import keras
import numpy as np
import pytest

from tfmusic.models.iass import IASS, DecoderBlock, iass_frequency_sizes
from tfmusic.models.layers import MedianFilter, median_filter_time

FRAMES = 24


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return IASS(target="vocals").build_for_frames(FRAMES)


@pytest.fixture(scope="module")
def mixture():
    return np.random.default_rng(0).random((2, 1, FRAMES, 2049)).astype(np.float32)


def test_parameter_count_matches_spec(model):
    assert trainable_count(model) == 3_205_682
    assert iass_frequency_sizes(1487) == ([1487, 495, 165, 55], [55, 18, 6, 2, 1])


def test_stereo_variant_changes_only_the_channel_convs():
    stereo = IASS(nb_channels=2).build_for_frames(FRAMES)
    # first conv (+9*16) and shortcut (+16) read 2 channels, last ConvT writes 2 (+8*9 + 1)
    assert trainable_count(stereo) == 3_205_682 + 9 * 16 + 16 + 8 * 9 + 1


def test_output_shapes_and_training_estimate(model, mixture):
    out = model(mixture, training=True)
    assert set(out) == {"mask", "estimate", "activity_logits"}
    assert out["mask"].shape == out["estimate"].shape == (2, 1, FRAMES, 2049)
    assert out["activity_logits"].shape == (2, FRAMES)
    mask = out["mask"].numpy()
    assert mask.min() >= 0
    np.testing.assert_allclose(out["estimate"].numpy(), mask * mixture, rtol=1e-6)


def test_inference_weights_the_mask_by_filtered_activity(mixture):
    keras.utils.set_random_seed(1)
    model = IASS(median_frames=5).build_for_frames(FRAMES)
    head = model.activity.out
    head.kernel.assign(np.zeros(head.kernel.shape, np.float32))  # logits = the head's bias
    plain = IASS.from_config({**model.get_config(), "apply_activity": False})
    plain.build_for_frames(FRAMES)
    plain.set_weights(model.get_weights())
    head.bias.assign(np.array([5.0], np.float32))  # always active -> identical to no weighting
    np.testing.assert_allclose(model(mixture)["mask"].numpy(), plain(mixture)["mask"].numpy(), rtol=1e-6)
    head.bias.assign(np.array([-5.0], np.float32))  # never active -> silence
    out = model(mixture)
    assert np.all(out["mask"].numpy() == 0) and np.all(out["estimate"].numpy() == 0)
    assert not np.all(model(mixture, training=True)["mask"].numpy() == 0)  # training ignores activity


def test_decoder_output_padding_bins_hold_the_upsampling_bias():
    """The extra bins equal Keras' ``Conv2DTranspose(output_padding=...)``: bias only (ONNX parity fix)."""
    keras.utils.set_random_seed(3)
    block = DecoderBlock(4, 3, 2, output_padding=2, last=True)
    x = np.random.default_rng(3).standard_normal((2, 5, 7, 6)).astype(np.float32)
    block(x)
    block.up.bias.assign(np.random.default_rng(4).standard_normal(4).astype(np.float32))
    reference = keras.layers.Conv2DTranspose(4, (1, 3), strides=(1, 3), padding="valid", output_padding=(0, 2))
    reference(x)
    reference.set_weights(block.up.get_weights())
    up = block._upsample(x).numpy()
    assert up.shape == (2, 5, 23, 4)
    np.testing.assert_allclose(up, reference(x).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(up[:, :, -2:], np.broadcast_to(block.up.bias.numpy(), (2, 5, 2, 4)))
    assert block(x).shape == (2, 5, 23, 2)


def test_activity_weight_thresholds_then_median_filters():
    model = IASS(activity_threshold=0.6, median_frames=3)
    prob = np.array([[0.9, 0.5, 0.9, 0.9, 0.1, 0.9, 0.1, 0.1]], np.float32)
    weight = model.activity_weight(keras.ops.convert_to_tensor(np.log(prob / (1 - prob)))).numpy()
    # binarized at 0.6: 1 0 1 1 0 1 0 0; median of 3 with reflect padding fills the isolated gaps
    binary = np.array([1, 0, 1, 1, 0, 1, 0, 0], np.float32)
    padded = np.pad(binary, 1, mode="reflect")
    expected = np.median(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=-1)
    np.testing.assert_array_equal(weight[0], expected)
    np.testing.assert_array_equal(expected, [0, 1, 1, 1, 1, 0, 0, 0])


@pytest.mark.parametrize("window", [1, 3, 21])
def test_median_filter_matches_numpy_reference(window):
    x = np.random.default_rng(window).random((3, 40)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (window // 2, window // 2)), mode="reflect")
    expected = np.median(np.lib.stride_tricks.sliding_window_view(padded, window, axis=1), axis=-1)
    np.testing.assert_allclose(median_filter_time(x, window).numpy() if window > 1 else x, expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(MedianFilter(window)(x)), expected, rtol=1e-6)


def test_median_filter_rejects_bad_windows():
    with pytest.raises(ValueError, match="odd"):
        median_filter_time(np.zeros((1, 30), np.float32), 4)
    with pytest.raises(ValueError, match="more than 10 frames"):
        median_filter_time(np.zeros((1, 10), np.float32), 21)


def test_input_statistics_standardize_and_floor(model, mixture):
    mean = np.linspace(0, 1, 2049)
    std = np.linspace(1, 2, 2049)
    std[5] = 0.0
    model.set_input_statistics(mean, std)
    np.testing.assert_allclose(model.input_mean.numpy(), mean[:1487], rtol=1e-6)
    assert model.input_std.numpy()[5] == pytest.approx(1e-4 * std[:1487].max(), rel=1e-5)
    assert model.input_std.trainable and model.input_mean.trainable
    with pytest.raises(ValueError, match="2049 or 1487"):
        model.set_input_statistics(np.zeros(100), np.ones(100))


def test_save_load_round_trip(model, mixture, tmp_path):
    model.set_input_statistics(np.full(1487, 0.1), np.full(1487, 2.0))
    path = tmp_path / "iass.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, IASS)
    assert loaded.get_config() == model.get_config() and loaded.target == "vocals"
    for key in ("mask", "activity_logits"):
        np.testing.assert_allclose(loaded(mixture)[key].numpy(), model(mixture)[key].numpy(), rtol=1e-5, atol=1e-6)


def test_constructor_validation():
    with pytest.raises(ValueError, match="max_bin"):
        IASS(max_bin=3000)
    with pytest.raises(ValueError, match="median_frames"):
        IASS(median_frames=4)
    with pytest.raises(ValueError, match="mask_activation"):
        IASS(mask_activation="sigmoid")


def test_softplus_mask_keeps_every_bin_trainable(mixture, tmp_path):
    """mask_activation="softplus": a bin pushed below zero still passes gradient (ReLU's does not), and
    the choice survives saving."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    models = {a: IASS(target="bass", mask_activation=a).build_for_frames(FRAMES) for a in ("relu", "softplus")}
    grads = {}
    for name, m in models.items():
        m.output_mean.assign(np.full(2049, -30.0, np.float32))  # every bin far below zero: "dead" under ReLU
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(mixture, training=True)["estimate"])
        grads[name] = tape.gradient(loss, m.output_mean).numpy()
    assert np.all(grads["relu"] == 0.0)
    assert np.all(grads["softplus"] > 0.0)
    path = tmp_path / "softplus.keras"
    models["softplus"].save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.mask_activation == "softplus"
    mask = loaded(mixture, training=True)["mask"].numpy()
    assert np.all(mask > 0.0) and np.allclose(mask, models["softplus"](mixture, training=True)["mask"].numpy())
